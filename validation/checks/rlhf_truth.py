"""Check: eq. (5) at the true reward, and where A-PARL's gain in G over the truth comes from.

On the rlhf family (``rlhf.make_problem``: tabular reward, labeller beta = 1), the true reward is a parameter of
the model, phi_true = r_true, and there the model agrees with the labeller on every pair: P_phi = p_true.

* (a) Stationarity. The exact hypergradient (soft_bellman route) at phi_true for each score of
  ``PreferenceObjective``: ``likelihood`` (eq. 5), ``excess_kl`` and ``brier``; for reference also the win rate
  against the uniform policy and likelihood + win rate. For excess_kl and brier also the second-order test of a
  local maximum: the largest eigenvalue of the Hessian (central differences of the exact hypergradient), relative
  to the largest in magnitude, and the change of G along random perturbations of phi_true.
* (b) Decomposition. Eq. (5) = entropy + kl with entropy = -E_rho[H(p_true)] and kl = -E_rho[KL(p_true || P_phi)]
  (``PreferenceObjective.decompose``), at A-PARL's final phi (full hypergradient, the loop of ``rlhf``) minus at
  phi_true, as means over problems with 95% bootstrap CIs.
"""
from __future__ import annotations

import time

import numpy as np

from parl_core import BilevelProblem, PluginHypergradient, PreferenceObjective, WeightedObjective, WinRateObjective

from ..core import (FAILS, Claim, CheckResult, mean_ci, save_figure, verdict_from_error, verdict_from_threshold,
                    worst)
from .rlhf import LOOP, make_problem, run_loop

SCORES = ("likelihood", "excess_kl", "brier")
STATIONARY_TOL = 1e-9    # |grad G| at a stationary point (gradients elsewhere are ~1e-2)
HESSIAN_REL_TOL = 1e-6   # largest Hessian eigenvalue / largest |eigenvalue| (central differences, step 1e-4)


def fd_hessian(problem: BilevelProblem, phi: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Symmetrised central differences of the exact hypergradient."""
    n = len(phi)
    H = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = step
        H[:, j] = (problem.hypergradient(phi + e) - problem.hypergradient(phi - e)) / (2 * step)
    return 0.5 * (H + H.T)


def default_scores() -> dict:
    """score -> factory(true_r, H) of the objective whose stationarity at phi_true is claimed."""
    return {s: (lambda r, H, s=s: PreferenceObjective(r, H, 1.0, score=s, mode="exact")) for s in SCORES}


def _at_truth(problem, true_r, rng, H: int, scores: dict) -> dict:
    """Gradient norms at phi_true for every objective; Hessian and perturbation tests for the proper scores."""
    lower, phi = problem.lower, problem.upper.truth(problem.lower)
    out = {"grad": {}, "top_eig_rel": {}, "perturbation_gain": {}, "value": {}}
    probs = {s: BilevelProblem(lower, make(true_r, H)) for s, make in scores.items()}
    win = WinRateObjective(true_r, H, 1.0, mode="exact")
    probs["win_rate"] = BilevelProblem(lower, win)
    probs["likelihood+win_rate"] = BilevelProblem(lower, WeightedObjective([(1.0, problem.upper), (1.0, win)]))
    for name, pb in probs.items():
        out["grad"][name] = pb.hypergradient(phi)
    term1 = problem.direct_gradient(phi, lower.solve(phi))
    out["term1"], out["term2"] = term1, problem.hypergradient(phi) - term1
    for s in (s for s in scores if s != "likelihood"):
        pb = probs[s]
        eig = np.linalg.eigvalsh(fd_hessian(pb, phi))
        out["top_eig_rel"][s] = float(eig[-1] / max(np.abs(eig).max(), 1e-300))
        g0 = pb.objective(phi)
        out["value"][s] = g0
        dirs = rng.normal(size=(4, len(phi)))
        dirs *= 0.1 / np.linalg.norm(dirs, axis=1, keepdims=True)
        out["perturbation_gain"][s] = max(pb.objective(phi + d) - g0 for d in dirs)
    return out


def _parts_gain(problem, T: int) -> dict:
    """A-PARL (likelihood, full hypergradient) for T iterations; the decomposition at phi_T minus at phi_true."""
    up, lower = problem.upper, problem.lower
    phi_T = run_loop(problem, PluginHypergradient(problem, "soft_bellman"), T)["phi"]
    a, b = up.decompose(lower, phi_T), up.decompose(lower, up.truth(lower))
    return {"phi": phi_T, "dG": a.total - b.total, "d_entropy": a.entropy - b.entropy, "d_kl": a.kl - b.kl,
            "split_error": abs(a.total - problem.objective(phi_T))}


def run(ctx, scores: dict | None = None, problems: int | None = None) -> CheckResult:
    """``scores``: score name -> factory(true_r, H) of the objective under test (default: PreferenceObjective
    with that score); "likelihood" gets the Term 1 / Term 2 split, every other score the local-maximum tests.
    ``problems``: how many problems of the family (default 8 quick, 40 full)."""
    t0 = time.time()
    n_problems = problems or (8 if ctx.quick else 40)
    T = 30 if ctx.quick else 100
    H = LOOP["horizon"]
    rng = ctx.rng("rlhf_truth")
    scores = default_scores() if scores is None else scores
    rows = []
    for i in ctx.bar(range(n_problems), "rlhf truth"):
        seed = ctx.seed * 10_000 + i
        problem, true_r = make_problem(seed, horizon=H)
        rows.append({"seed": seed, "problem": problem, "true_r": true_r, **_at_truth(problem, true_r, rng, H, scores),
                     **_parts_gain(problem, T)})
    settings = {"problems": n_problems, "family": "rlhf (garnet S=3, A=2, gamma 0.9, lam 0.5, tabular phi, beta 1)",
                "H_u": H, "T": T, **{k: v for k, v in LOOP.items() if k != "horizon"},
                "hypergradient": "exact, soft_bellman route", "hessian": "central differences of it, step 1e-4"}
    claims = _stationarity_claims(ctx, rows, H, settings, scores) + _decomposition_claims(ctx, rows, H, settings)
    figs = [_figure(ctx, rows)]
    norms = {s: float(np.median([np.linalg.norm(r["grad"][s]) for r in rows])) for s in rows[0]["grad"]}
    g = claims[-2].measured
    summary = ("Median |grad G| at the true reward: " + ", ".join(f"{k} {v:.3g}" for k, v in norms.items())
               + f". A-PARL's final G minus G at the truth: {g['mean_dG']:+.4f} [{g['dG_ci_low']:+.4f}, "
               f"{g['dG_ci_high']:+.4f}], of which entropy {g['mean_d_entropy']:+.4f} and KL {g['mean_d_kl']:+.4f}.")
    return CheckResult("rlhf_truth", "Eq. (5) at the true reward: stationarity per score and the entropy gain",
                       summary, claims, figs, time.time() - t0)


def _save(ctx, name, row, H, **extra):
    return ctx.save_counterexample(name, row["problem"].lower.mdp, true_reward=row["true_r"],
                                   phi_true=row["true_r"].ravel(), horizon=np.array(H),
                                   temperature=np.array(row["problem"].lower.temperature), **extra)


def _stationarity_claims(ctx, rows, H, settings, scores) -> list[Claim]:
    claims = []
    for s in scores:
        norms = np.array([np.linalg.norm(r["grad"][s]) for r in rows])
        verdicts = [verdict_from_error(float(norms.max()), STATIONARY_TOL)]
        measured = {"max_grad_norm": float(norms.max()), "median_grad_norm": float(np.median(norms)),
                    "min_grad_norm": float(norms.min()), "tolerance": STATIONARY_TOL}
        text = f"The true reward is a stationary point of the {s} objective (|grad G(phi_true)| <= {STATIONARY_TOL:g})"
        if s == "likelihood":
            t1 = np.array([np.linalg.norm(r["term1"]) for r in rows])
            t2 = np.array([np.linalg.norm(r["term2"]) for r in rows])
            text = ("The true reward is a stationary point of eq. (5), the expected log-likelihood "
                    f"(|grad G(phi_true)| <= {STATIONARY_TOL:g} on every problem)")
            measured |= {"max_term1_norm": float(t1.max()), "median_term2_norm": float(np.median(t2)),
                         "median_grad_norm_by_objective": {k: float(np.median([np.linalg.norm(r["grad"][k])
                                                                               for r in rows])) for k in rows[0]["grad"]}}
        else:
            eig = np.array([r["top_eig_rel"][s] for r in rows])
            gain = np.array([r["perturbation_gain"][s] for r in rows])
            val = np.array([r["value"][s] for r in rows])
            verdicts += [verdict_from_threshold(float(eig.max()), HESSIAN_REL_TOL),
                         verdict_from_threshold(float(gain.max()), 0.0)]
            text += (" and a local maximum there (no Hessian eigenvalue above "
                     f"{HESSIAN_REL_TOL:g} x the largest |eigenvalue|; no random perturbation of size 0.1 raises G)")
            measured |= {"max_top_eigenvalue_relative": float(eig.max()), "max_perturbation_gain": float(gain.max()),
                         "max_abs_value_at_truth": float(np.abs(val).max())}
        verdict = worst(verdicts)
        cex = None
        if verdict == FAILS:
            w = rows[int(np.argmax(norms))]
            cex = _save(ctx, f"rlhf_truth-stationary-{s}", w, H, grad_at_truth=w["grad"][s])
        claims.append(Claim(id=f"rlhf_truth.stationary.{s}", claim=text, verdict=verdict, measured=measured,
                            settings=settings, counterexample=cex,
                            notes=("at phi_true Term 1 = E[(p_true - P_phi) grad(R0 - R1)] vanishes for any policy; "
                                   "Term 2 = E[f grad log rho] vanishes only if the per-pair score f is zero at "
                                   "the truth, which holds for excess_kl and brier but not for the likelihood, "
                                   "where f = -H(p_true)") if s == "likelihood" else ""))
    return claims


def _decomposition_claims(ctx, rows, H, settings) -> list[Claim]:
    stats = {}
    for key in ("dG", "d_entropy", "d_kl"):
        m, lo, hi = mean_ci(np.array([r[key] for r in rows]), seed=ctx.seed)
        stats |= {f"mean_{key}": m, f"{key}_ci_low": lo, f"{key}_ci_high": hi}
    dG = np.array([r["dG"] for r in rows])
    measured = stats | {"fraction_gain": float(np.mean(dG > 0)),
                        "max_split_error": float(max(r["split_error"] for r in rows))}
    gain = verdict_from_threshold(stats["dG_ci_low"], 0.0, below=False)
    from_entropy = worst([gain, verdict_from_threshold(stats["d_entropy_ci_low"], 0.0, below=False),
                          verdict_from_threshold(stats["d_kl_ci_high"], 0.0)])
    out = []
    for cid, verdict, text, pick in (
            ("gain_over_truth", gain, "A-PARL (full hypergradient) ends with a higher eq.-(5) objective than the "
             "true reward itself: G(phi_T) - G(phi_true) has its 95% CI above 0", np.argmin(dG)),
            ("gain_from_entropy", from_entropy, "A-PARL's gain in G over the true reward comes from the entropy "
             "part of eq. (5): G = -E[H(p_true)] - E[KL(p_true || P_phi)], with the entropy part's difference "
             "above 0 (CI) and the KL part's at most 0 (CI)",
             np.argmin([r["d_entropy"] - max(r["d_kl"], 0.0) for r in rows]))):
        cex = _save(ctx, f"rlhf_truth-{cid}", rows[int(pick)], H, phi_a_parl=rows[int(pick)]["phi"]) \
            if verdict == FAILS else None
        out.append(Claim(id=f"rlhf_truth.{cid}", claim=text, verdict=verdict, measured=measured,
                         settings=settings, counterexample=cex))
    return out


def _figure(ctx, rows):
    import matplotlib.pyplot as plt
    path, rel = ctx.figure_path("rlhf_truth.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(rows[0]["grad"])
    floor = 1e-18
    for j, k in enumerate(names):
        v = np.maximum([np.linalg.norm(r["grad"][k]) for r in rows], floor)
        axes[0].plot(j + 0.08 * np.random.default_rng(j).normal(size=len(v)), v, "o", alpha=0.6)
    axes[0].axhline(STATIONARY_TOL, color="k", ls="--", lw=1, label=f"stationarity tolerance {STATIONARY_TOL:g}")
    axes[0].set(yscale="log", ylabel=r"$\|\nabla G(\phi_{true})\|$ (exact; 0 drawn at 1e-18)",
                title="Hypergradient at the true reward, per objective")
    axes[0].set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    axes[0].legend(fontsize=8)
    labels = ("G", "entropy part", "KL part")
    for j, key in enumerate(("dG", "d_entropy", "d_kl")):
        m, lo, hi = mean_ci(np.array([r[key] for r in rows]), seed=ctx.seed)
        axes[1].bar(j, m, color=f"C{j}", yerr=[[m - lo], [hi - m]], capsize=5)
    axes[1].axhline(0, color="k", lw=1)
    axes[1].set_xticks(range(3), labels)
    axes[1].set(ylabel="A-PARL's final phi minus phi_true (mean, 95% CI)",
                title="Where A-PARL's gain in eq. (5) over the truth comes from")
    return save_figure(fig, path, rel, "Left: norm of the exact hypergradient at the true reward for each objective "
                       "(one dot per problem). Right: eq. (5) at A-PARL's final reward minus at the true reward, "
                       "split into -E[H(p_true)] and -E[KL(p_true || P_phi)].")
