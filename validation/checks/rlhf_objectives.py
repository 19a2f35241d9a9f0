"""Check: for each upper objective of parl_core, A-PARL with the full hypergradient against the loop that drops
Term 2, on three families of tabular RLHF problems.

Objectives (all with the Bradley-Terry labeller beta = 1 on the true H_u-step return, exact by enumeration):
``likelihood`` (eq. 5), ``excess_kl`` (-E[KL(p_true || P_phi)], an oracle diagnostic), ``brier``
(-E[(P_phi - p_true)^2]), ``win_rate`` (the probability that the labeller prefers a trajectory of pi*(phi) to one
of the uniform policy: eqs. 2-4 with a designer utility) and ``likelihood+win_rate`` (their sum). Both loops run
the rlhf check's Algorithm 1 (``rlhf.LOOP``: K exact natural-PG steps, warm start, phi = 0, theta = 0); the
drop-Term-2 loop ascends only the direct term of eq. (8) (``PluginHypergradient(drop_term2=True)``; for the win
rate that term is zero, so that loop never moves).

Families: ``rlhf`` (the rlhf check's Garnets, S = 3, A = 2), ``garnet-S6`` (S = 6, A = 2, branching 2) and
``grid-3x3`` (a deterministic 3x3 gridworld, A = 4, start in a corner, H_u = 4); tabular reward, lam = 0.5,
gamma = 0.9, true reward U(-1, 1) per problem. Reported per objective and family: the true return of the final
policy and the distance of the final reward to the truth (after removing the common constant, which changes
neither the labeller model nor the policy), as paired differences A-PARL minus drop-Term-2 with 95% bootstrap CIs.
"""
from __future__ import annotations

import time

import numpy as np

from parl_core import (BilevelProblem, LinearReward, PluginHypergradient, PreferenceObjective, SoftLowerLevel,
                       WeightedObjective, WinRateObjective, garnet, gridworld)

from ..core import FAILS, Claim, CheckResult, mean_ci, save_figure, verdict_from_threshold, worst
from .rlhf import LOOP, make_problem, run_loop, true_return

OBJECTIVES = {
    "likelihood": lambda r, H: PreferenceObjective(r, H, 1.0, score="likelihood", mode="exact"),
    "excess_kl": lambda r, H: PreferenceObjective(r, H, 1.0, score="excess_kl", mode="exact"),
    "brier": lambda r, H: PreferenceObjective(r, H, 1.0, score="brier", mode="exact"),
    "win_rate": lambda r, H: WinRateObjective(r, H, 1.0, mode="exact"),
    "likelihood+win_rate": lambda r, H: WeightedObjective([(1.0, OBJECTIVES["likelihood"](r, H)),
                                                           (1.0, OBJECTIVES["win_rate"](r, H))]),
}
# family -> (horizon H_u, problems quick, problems full)
FAMILIES = {"rlhf": (LOOP["horizon"], 3, 40), "garnet-S6": (3, 1, 10), "grid-3x3": (4, 1, 8)}
METRICS = {"true_return": "true H_u-step return of the final policy",
           "distance": "closeness of the final reward to the true reward (drop-Term-2 distance minus A-PARL's)"}


def family_problem(family: str, seed: int) -> tuple[SoftLowerLevel, np.ndarray]:
    """The lower level and the true reward of problem ``seed`` of a family."""
    if family == "rlhf":
        problem, true_r = make_problem(seed)
        return problem.lower, true_r
    if family == "garnet-S6":
        mdp = garnet(6, 2, branching=2, gamma=0.9, seed=seed)
    elif family == "grid-3x3":
        mdp = gridworld(3, gamma=0.9, slip=0.0)
    else:
        raise ValueError(f"family: expected one of {tuple(FAMILIES)}, got {family!r}")
    true_r = np.random.default_rng(seed).uniform(-1, 1, size=mdp.shape)
    return SoftLowerLevel(mdp, LinearReward.tabular(*mdp.shape), 0.5), true_r


def distance_to_truth(phi: np.ndarray, true_r: np.ndarray) -> float:
    """||(phi - mean phi) - (r_true - mean r_true)||: the common constant is a symmetry of G and of pi*."""
    d = np.asarray(phi) - true_r.ravel()
    return float(np.linalg.norm(d - d.mean()))


def compare(lower, true_r, H: int, make_objective, T: int) -> dict:
    """Both loops on one problem: final true return and distance to the truth of each."""
    problem = BilevelProblem(lower, make_objective(true_r, H))
    out = {}
    for name, est in (("a_parl", PluginHypergradient(problem, "soft_bellman")),
                      ("drop_term2", PluginHypergradient(problem, drop_term2=True))):
        res = run_loop(problem, est, T)
        out[name] = {"phi": res["phi"], "true_return": true_return(problem, true_r, H, res["phi"], res["theta"]),
                     "distance": distance_to_truth(res["phi"], true_r)}
    return out


def _differences(rows: list[dict], metric: str) -> np.ndarray:
    sign = -1.0 if metric == "distance" else 1.0  # positive: A-PARL better
    return np.array([sign * (r["a_parl"][metric] - r["drop_term2"][metric]) for r in rows])


def run(ctx, objectives: dict | None = None, families: dict | None = None) -> CheckResult:
    """``objectives``: name -> factory(true_r, H) (default OBJECTIVES); ``families``: name -> (H_u, problems
    quick, problems full) over the names of FAMILIES (default all)."""
    t0 = time.time()
    objectives, families = objectives or OBJECTIVES, families or FAMILIES
    T = 20 if ctx.quick else 100
    rows: dict[tuple[str, str], list[dict]] = {}
    for family, (H, n_quick, n_full) in families.items():
        for i in ctx.bar(range(n_quick if ctx.quick else n_full), f"objectives ({family})"):
            seed = ctx.seed * 10_000 + i
            lower, true_r = family_problem(family, seed)
            for obj, make in objectives.items():
                rows.setdefault((family, obj), []).append({"seed": seed, "lower": lower, "true_r": true_r, "H": H,
                                                           **compare(lower, true_r, H, make, T)})
    settings = {"T": T, **{k: v for k, v in LOOP.items() if k != "horizon"}, "labeller": "Bradley-Terry, beta = 1",
                "families": {f: {"H_u": h, "problems": q if ctx.quick else n} for f, (h, q, n) in families.items()},
                "win_rate_reference": "uniform policy", "ci": "95% percentile bootstrap of the mean paired difference"}
    claims = [_claim(ctx, rows, obj, metric, settings, list(families)) for obj in objectives for metric in METRICS]
    summary = f"A-PARL minus drop-Term-2, true return (mean [95% CI]) per objective on the {' / '.join(families)} " \
              "families: " + "; ".join(
                  f"{obj} " + " / ".join("{:+.3f} [{:+.3f}, {:+.3f}]".format(*mean_ci(_differences(
                      rows[(f, obj)], "true_return"), seed=ctx.seed)) for f in families) for obj in objectives) + "."
    return CheckResult("rlhf_objectives", "Upper objectives: A-PARL against the loop that drops Term 2, per family",
                       summary, claims, [_figure(ctx, rows, list(objectives), list(families))], time.time() - t0)


def _claim(ctx, rows, obj: str, metric: str, settings: dict, families: list[str]) -> Claim:
    measured, verdicts, worst_case = {}, [], None
    for family in families:
        rs = rows[(family, obj)]
        d = _differences(rs, metric)
        m, lo, hi = mean_ci(d, seed=ctx.seed)
        key = family.replace("-", "_")
        measured |= {f"{key}_mean_difference": m, f"{key}_ci_low": lo, f"{key}_ci_high": hi,
                     f"{key}_a_parl_mean": float(np.mean([r["a_parl"][metric] for r in rs])),
                     f"{key}_drop_term2_mean": float(np.mean([r["drop_term2"][metric] for r in rs]))}
        verdicts.append(verdict_from_threshold(lo, 0.0, below=False))
        if verdicts[-1] == FAILS and (worst_case is None or d.min() < worst_case[0]):
            worst_case = (d.min(), rs[int(np.argmin(d))])
    verdict = worst(verdicts)
    cex = None
    if verdict == FAILS:
        w = worst_case[1]
        cex = ctx.save_counterexample(f"rlhf_objectives-{obj.replace('+', '_plus_')}-{metric}", w["lower"].mdp,
                                      true_reward=w["true_r"], phi_a_parl=w["a_parl"]["phi"],
                                      phi_drop_term2=w["drop_term2"]["phi"], horizon=np.array(w["H"]),
                                      temperature=np.array(w["lower"].temperature))
    return Claim(id=f"rlhf_objectives.{obj.replace('+', '_plus_')}.{metric}",
                 claim=(f"With the {obj} objective, A-PARL (full hypergradient) reaches a better {METRICS[metric]} "
                        "than the loop that drops Term 2, on every family (95% CI of the mean paired difference "
                        "above 0)"),
                 verdict=verdict, measured=measured, settings=settings, counterexample=cex)


def _figure(ctx, rows, objs: list[str], fams: list[str]):
    import matplotlib.pyplot as plt
    path, rel = ctx.figure_path("rlhf_objectives.png")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, metric in zip(axes, METRICS):
        for k, family in enumerate(fams):
            for j, obj in enumerate(objs):
                m, lo, hi = mean_ci(_differences(rows[(family, obj)], metric), seed=ctx.seed)
                y = j + 0.22 * (k - 1)
                ax.errorbar(m, y, xerr=[[m - lo], [hi - m]], fmt="o", color=f"C{k}", capsize=3,
                            label=family if j == 0 else None)
        ax.axvline(0, color="k", lw=1)
        ax.set_yticks(range(len(objs)), objs)
        ax.invert_yaxis()
        ax.set_xlabel("A-PARL minus drop-Term-2 (mean, 95% CI)" if metric == "true_return"
                      else "distance to truth: drop-Term-2 minus A-PARL (mean, 95% CI)")
        ax.set_title("True return of the final policy" if metric == "true_return" else "Closeness to the true reward")
        ax.legend(fontsize=8)
    return save_figure(fig, path, rel, "Paired differences between A-PARL with the full hypergradient and the loop "
                       "that drops Term 2, per upper objective and problem family; right of 0: A-PARL better.")
