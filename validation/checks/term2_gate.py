"""Check: do deep A-PARL's Term 2 gates (``parl_deep.preference.gate``) keep noise out and let a signal in?

On the tabular RLHF problem of ``term2_noise`` (``exact_rlhf_case``), soft-bellman's sampled Term 2 is computed on
each batch, on its two halves and on its ``FOLDS`` folds, as A-PARL's gates split a session's pairs. Two settings:

* noise: lam 0.1, gamma 0.99, N = 25 pairs (the deep walker-walk session's size, near SAC's discount), where the
  estimate's mean cosine with the exact Term 2 is about 0;
* signal: lam 1, gamma 0.8, N = 1,000 pairs, where that cosine is about 0.9.

Per setting: the opening rates of split-cosine (the halves' cosine above ``COS_THRESHOLD``) and of fold-z (z above
the 1 - ``ALPHA`` quantile of F(1, FOLDS - 1)), the mean cosine of the whole-batch estimate with the exact Term 2,
that of what each gate would ascend (the mean of its parts' estimates, overall and when it opens), and the
fraction of batches whose halves' |cosine| exceeds 0.9: the symptom of noise along one shared direction
(the term (1/lam) sum_h E[MC_h] mean_i adv_ih of ``term2_noise``'s note).

Claims: each gate opens on at most ``NOISE_RATE`` of the noise batches, and on at least ``SIGNAL_RATE`` of the
signal batches.
"""
from __future__ import annotations

import time

import numpy as np

from ..core import Claim, CheckResult, save_figure, verdict_from_threshold
from ..term2_estimators import continuation_for, cosine, exact_case, run_parts

FOLDS, ALPHA, COS_THRESHOLD = 5, 0.05, 0.2   # the deep method's defaults (gate_folds, gate_alpha, gate_threshold)
NOISE_RATE, SIGNAL_RATE = 0.1, 0.5
SETTINGS = {"noise": (0.1, 0.99, 25), "signal": (1.0, 0.8, 1000)}
GATE_NAMES = ("split-cosine", "fold-z")


def measure(case: dict, n_pairs: int, batches: int, seed: int, runner=run_parts) -> dict:
    """Per batch: the split-cosine and fold-z statistics and cos(whole-batch estimate, exact Term 2)."""
    from parl_deep.preference.gate import fold_z_statistic, gate_parts

    parts = gate_parts("split-cosine", n_pairs, FOLDS) + gate_parts("fold-z", n_pairs, FOLDS)  # as A-PARL splits
    out = {k: np.zeros(batches) for k in ("split_cos", "fold_z", "cos_exact", "cos_split-cosine", "cos_fold-z")}
    for b in range(batches):
        est = runner(case, n_pairs, seed + b, parts, continuation=continuation_for(case["gamma"]))
        out["cos_exact"][b] = cosine(est[0], case["term2"])
        # what each gate would ascend: the mean of its parts' estimates (A-PARL's _gated)
        out["cos_split-cosine"][b] = cosine((est[1] + est[2]) / 2, case["term2"])
        out["cos_fold-z"][b] = cosine(np.mean(est[3:], axis=0), case["term2"])
        out["split_cos"][b] = cosine(est[1], est[2])
        out["fold_z"][b] = fold_z_statistic(est[3:])
    return out


def opened(stats: dict) -> dict[str, np.ndarray]:
    from parl_deep.preference.gate import fold_z_threshold

    return {"split-cosine": stats["split_cos"] > COS_THRESHOLD,
            "fold-z": stats["fold_z"] > fold_z_threshold(ALPHA, FOLDS)}


def run(ctx, runner=None, batches: int | None = None) -> CheckResult:
    """``runner(case, n_pairs, seed, parts, continuation=...) -> [whole, part_0, ...]`` Term 2 arrays replaces
    the deep soft-bellman estimator (default ``run_parts``); ``batches`` per setting (default 12 quick, 100)."""
    t0 = time.time()
    B = batches or (12 if ctx.quick else 100)
    rows = {}
    for k, (name, (lam, gamma, N)) in enumerate(ctx.bar(list(SETTINGS.items()), "term2 gate")):
        case = exact_case(ctx.seed, lam=lam, gamma=gamma)
        stats = measure(case, N, B, ctx.seed * 1_000_003 + 100_000 * k, runner or run_parts)
        rows[name] = {"case": case, "stats": stats, "open": opened(stats)}
    settings = {"problem": "exact_rlhf_case: garnet S=5, A=3, branching 3, 4 linear features, T=3, beta=2",
                "estimator": "soft-bellman (exact per-cell regression)", "batches_per_setting": B,
                "settings": {k: {"lam": v[0], "gamma": v[1], "pairs": v[2]} for k, v in SETTINGS.items()},
                "folds": FOLDS, "alpha": ALPHA, "cos_threshold": COS_THRESHOLD}
    claims = [_claim(ctx, rows, gate, which, settings) for gate in GATE_NAMES for which in ("noise", "signal")]
    rates = {(c.measured["gate"], c.measured["setting"]): c.measured["open_rate"] for c in claims}
    summary = (f"Opening rate on noise (cos(estimate, exact) {rows['noise']['stats']['cos_exact'].mean():+.2f}) / "
               f"on signal (cos {rows['signal']['stats']['cos_exact'].mean():+.2f}): " +
               "; ".join(f"{g} {rates[(g, 'noise')]:.2f} / {rates[(g, 'signal')]:.2f}" for g in GATE_NAMES) +
               f". Halves with |cos| > 0.9 on noise: {np.mean(np.abs(rows['noise']['stats']['split_cos']) > 0.9):.2f}.")
    return CheckResult("term2_gate", "A-PARL's Term 2 gates on noise and on signal", summary, claims,
                       [_figure(ctx, rows)], time.time() - t0)


def _claim(ctx, rows, gate: str, which: str, settings) -> Claim:
    row = rows[which]
    rate = float(np.mean(row["open"][gate]))
    st = row["stats"]
    noise = which == "noise"
    verdict = verdict_from_threshold(rate, NOISE_RATE if noise else SIGNAL_RATE, below=noise)
    measured = {"open_rate": rate, "gate": gate, "setting": which,
                "mean_cos_estimate_exact": float(st["cos_exact"].mean()),
                "mean_cos_ascended": float(st[f"cos_{gate}"].mean()),
                "mean_cos_ascended_when_open": float(st[f"cos_{gate}"][row["open"][gate]].mean())
                if row["open"][gate].any() else float("nan"),
                "halves_abs_cos_above_0.9": float(np.mean(np.abs(st["split_cos"]) > 0.9)),
                "median_fold_z": float(np.median(st["fold_z"]))}
    cex = None
    if verdict != "holds":
        case = row["case"]
        cex = ctx.save_counterexample(f"term2_gate-{gate}-{which}", case["mdp"], true_reward=case["true"],
                                      phi=case["reward"].phi.detach().numpy(), features=case["reward"].features.numpy(),
                                      temperature=np.array(case["lam"]), beta=np.array(case["beta"]),
                                      horizon=np.array(case["T"]), exact_term2=case["term2"],
                                      split_cos=st["split_cos"], fold_z=st["fold_z"], cos_exact=st["cos_exact"],
                                      pairs=np.array(SETTINGS[which][2]))
    text = (f"on the noise setting (mean cos(estimate, exact Term 2) near 0) the {gate} gate opens on at most "
            f"{NOISE_RATE:g} of the batches" if noise else
            f"on the signal setting (mean cos(estimate, exact Term 2) near 0.9) the {gate} gate opens on at least "
            f"{SIGNAL_RATE:g} of the batches")
    return Claim(id=f"term2_gate.{gate.replace('-', '_')}.{which}", claim=text, verdict=verdict, measured=measured,
                 settings=settings, counterexample=cex)


def _figure(ctx, rows):
    import matplotlib.pyplot as plt
    from parl_deep.preference.gate import fold_z_threshold

    path, rel = ctx.figure_path("term2_gate.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for j, (name, row) in enumerate(rows.items()):
        st = row["stats"]
        axes[0].hist(st["split_cos"], bins=np.linspace(-1, 1, 21), alpha=0.6, color=f"C{j}", label=name)
        axes[1].hist(np.log10(np.clip(st["fold_z"], 1e-3, 1e6)), bins=20, alpha=0.6, color=f"C{j}", label=name)
    axes[0].axvline(COS_THRESHOLD, color="k", ls="--", label="threshold")
    axes[1].axvline(np.log10(fold_z_threshold(ALPHA, FOLDS)), color="k", ls="--", label="threshold")
    axes[0].set(xlabel="cosine of the two halves' Term 2 (split-cosine)", ylabel="batches")
    axes[1].set(xlabel=f"log10 z over {FOLDS} folds (fold-z)")
    for ax in axes:
        ax.legend(fontsize=8)
    return save_figure(fig, path, rel, "The gates' statistics over batches of the noise and the signal settings; a "
                       "gate opens right of its dashed line.")
