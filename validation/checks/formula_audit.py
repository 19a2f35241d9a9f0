"""Check 1: the paper's gradient formulas (15), (16), (17) against automatic differentiation of the exact value.

Two forms are audited.

* Finite horizon, as the equations are written: V_H(phi, theta) = E_rho[ sum_{h<H} gamma^h r_phi(s_h, a_h) ] over
  H-step trajectories. Both sides are exact: the formula's expectation is a sum over all enumerated trajectories,
  the truth is torch autodiff of the enumerated value.
* Entropy-regularised infinite horizon, the objective the engine optimises: r is replaced by
  r~ = r - lam log pi_theta. The trajectory expectations are evaluated exactly by the Markov property,
  E[sum_h gamma^h c_h sum_{j<=h} X(s_j, a_j)] = sum_s d(s) sum_a pi(a|s) X(s, a) Q_c(s, a) with d the discounted
  occupancy and Q_c the action value of c; the truth is autodiff of ``SoftLowerLevel.torch_value``.

Corrected Hessian (derived here; differentiate (15) once more, the score-function rule adds the product of scores):

    hess V = E[ sum_h gamma^h r_h ( sum_{j<=h} hess log pi_j + G_h G_h^T ) ],   G_h = sum_{j<=h} grad log pi_j,

and in the entropy-regularised form r~_h depends on theta too, which adds
- lam E[ sum_h gamma^h ( g_h G_h^T + G_h g_h^T + hess log pi_h ) ] = + lam sum_s d(s) hess log pi(.|s).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.func import grad, hessian, jacfwd, jacrev

from parl_core import enumerate_trajectories
from parl_core.linalg import solve_discounted
from parl_core.policy import log_softmax, softmax

from ..core import Claim, CheckResult, save_figure, verdict_from_error
from ..families import tiny

TOL = 1e-8  # relative error (max |formula - autodiff| / max |autodiff|) under which a formula "matches"


# ------------------------------------------------------------------ score-function pieces
def scores(pi: np.ndarray) -> np.ndarray:
    """grad_theta log pi(a|s) for every (s, a), as flat vectors: (S, A, S*A)."""
    S, A = pi.shape
    g = np.zeros((S, A, S * A))
    for s in range(S):
        for a in range(A):
            g[s, a, s * A:(s + 1) * A] = -pi[s]
            g[s, a, s * A + a] += 1.0
    return g


def score_hessians(pi: np.ndarray) -> np.ndarray:
    """hess_theta log pi(a|s) = -(diag pi_s - pi_s pi_s^T) on the block of state s (it does not depend on a): (S, SA, SA)."""
    S, A = pi.shape
    H = np.zeros((S, S * A, S * A))
    for s in range(S):
        H[s, s * A:(s + 1) * A, s * A:(s + 1) * A] = -(np.diag(pi[s]) - np.outer(pi[s], pi[s]))
    return H


# ------------------------------------------------------------------ finite horizon, by enumeration
class FiniteTerms:
    """Everything the finite-horizon formulas need, as exact per-trajectory arrays."""

    def __init__(self, case, phi, theta, horizon):
        mdp = case.mdp
        self.traj = enumerate_trajectories(mdp, horizon, limit=20_000)
        st, ac = self.traj.states, self.traj.actions
        pi = softmax(theta)
        self.pi, self.gamma, self.horizon = pi, mdp.gamma, horizon
        self.rho = np.exp(self.traj.log_prob(log_softmax(theta)))  # (N,)
        disc = mdp.gamma ** np.arange(horizon)
        r = case.reward().table(phi)
        self.rw = disc * r[st, ac]  # (N, H): gamma^h r(s_h, a_h)
        self.fw = disc[None, :, None] * case.features[st, ac]  # (N, H, n): gamma^h grad_phi r
        g = scores(pi)[st, ac]  # (N, H, SA)
        self.G = np.cumsum(g, axis=1)  # sum_{j<=h} grad log pi_j
        self.CH = np.cumsum(score_hessians(pi)[st], axis=1)  # sum_{j<=h} hess log pi_j: (N, H, SA, SA)


def f15_finite(t: FiniteTerms) -> np.ndarray:
    return np.einsum("n,nh,nhi->i", t.rho, t.rw, t.G)


def f16_finite(t: FiniteTerms) -> np.ndarray:
    return np.einsum("n,nh,nhij->ij", t.rho, t.rw, t.CH)


def f16_finite_corrected(t: FiniteTerms) -> np.ndarray:
    return np.einsum("n,nh,nhij->ij", t.rho, t.rw, t.CH) + np.einsum("n,nh,nhi,nhj->ij", t.rho, t.rw, t.G, t.G)


def f17_finite(t: FiniteTerms) -> np.ndarray:
    """(n, SA): E[sum_h gamma^h grad_phi r_h (sum_{j<=h} grad_theta log pi_j)^T]."""
    return np.einsum("n,nhk,nhi->ki", t.rho, t.fw, t.G)


FINITE_FORMULAS = {"eq15": f15_finite, "eq16": f16_finite, "eq17": f17_finite}
FINITE_CORRECTED = {"eq16": f16_finite_corrected}


def finite_truth(case, phi, theta, horizon, traj):
    """Autodiff of the enumerated finite-horizon value: gradient (SA,), Hessian (SA, SA), mixed (n, SA)."""
    st, ac = torch.as_tensor(traj.states), torch.as_tensor(traj.actions)
    base = torch.as_tensor(traj.log_base)
    disc = torch.as_tensor(case.gamma ** np.arange(horizon))
    feats = torch.as_tensor(case.features)
    S, A = case.S, case.A

    def value(phi_t, theta_flat):
        logpi = torch.log_softmax(theta_flat.reshape(S, A), dim=-1)
        rho = (base + logpi[st, ac].sum(1)).exp()
        r = feats @ phi_t
        return rho @ (disc * r[st, ac]).sum(1)

    p, th = torch.as_tensor(phi), torch.as_tensor(theta.ravel())
    return (grad(value, argnums=1)(p, th).numpy(), hessian(value, argnums=1)(p, th).numpy(),
            jacfwd(jacrev(value, argnums=1), argnums=0)(p, th).numpy().T)


# ------------------------------------------------------------------ entropy-regularised infinite horizon
class OccupancyTerms:
    """The exact infinite-horizon pieces: occupancy d, soft values, action values of r~ and of grad_phi r."""

    def __init__(self, case, phi, theta):
        lower = case.lower()
        mdp, lam = case.mdp, case.temperature
        S, A = mdp.shape
        pi = softmax(theta)
        ev = lower.evaluate(phi, pi)
        self.pi, self.d, self.v, self.lam, self.gamma = pi, ev.d, ev.v, lam, mdp.gamma
        self.Qc = ev.q - lam * log_softmax(theta)  # action value of r~ = r - lam log pi
        self.g = scores(pi)
        self.Hs = score_hessians(pi)
        P_pi = mdp.policy_matrix(pi)
        Pd = mdp.dense_transitions()
        f = case.features  # grad_phi r (S, A, n)
        v_phi = solve_discounted(P_pi, mdp.gamma, np.einsum("sa,sak->sk", pi, f))
        self.Q_phi = f + mdp.gamma * np.einsum("sat,tk->sak", Pd, v_phi)  # action value of grad_phi r
        b = np.einsum("sa,sai,sa->si", pi, self.g, self.Qc)
        psi = solve_discounted(P_pi, mdp.gamma, b)  # E[sum_k gamma^k g_k Qc_k | s_0 = s]
        self.W = mdp.gamma * np.einsum("sat,ti->sai", Pd, psi)
        self.occ = ev.d[:, None] * pi  # discounted state-action occupancy


def f15_entropy(t: OccupancyTerms) -> np.ndarray:
    return np.einsum("sa,sa,sai->i", t.occ, t.Qc, t.g)


def f16_entropy(t: OccupancyTerms) -> np.ndarray:
    return np.einsum("s,s,sij->ij", t.d, t.v, t.Hs)


def f16_entropy_corrected(t: OccupancyTerms) -> np.ndarray:
    t1 = np.einsum("s,s,sij->ij", t.d, t.v, t.Hs)
    t2 = (np.einsum("sa,sa,sai,saj->ij", t.occ, t.Qc, t.g, t.g) + np.einsum("sa,sai,saj->ij", t.occ, t.g, t.W)
          + np.einsum("sa,sai,saj->ij", t.occ, t.W, t.g))
    return t1 + t2 + t.lam * np.einsum("s,sij->ij", t.d, t.Hs)


def f17_entropy(t: OccupancyTerms) -> np.ndarray:
    return np.einsum("sa,sak,sai->ki", t.occ, t.Q_phi, t.g)


ENTROPY_FORMULAS = {"eq15": f15_entropy, "eq16": f16_entropy, "eq17": f17_entropy}
ENTROPY_CORRECTED = {"eq16": f16_entropy_corrected}


def entropy_truth(case, phi, theta):
    lower = case.lower()
    lower.torch_transitions()
    S, A = case.S, case.A

    def value(phi_t, theta_flat):
        return lower.torch_value(phi_t, theta_flat.reshape(S, A))

    p, th = torch.as_tensor(phi), torch.as_tensor(theta.ravel())
    return (grad(value, argnums=1)(p, th).numpy(), hessian(value, argnums=1)(p, th).numpy(),
            jacfwd(jacrev(value, argnums=1), argnums=0)(p, th).numpy().T)


# ------------------------------------------------------------------ the check
CLAIMS = {
    "eq15": "eq. (15): grad_theta V = E[sum_h gamma^h r_h sum_{j<=h} grad log pi(a_j|s_j)]",
    "eq16": "eq. (16): hess_theta V = E[sum_h gamma^h r_h sum_{j<=h} hess log pi(a_j|s_j)]",
    "eq17": "eq. (17): d2V/dtheta dphi = E[sum_h gamma^h grad_phi r_h (sum_{j<=h} grad log pi(a_j|s_j))^T]",
}
FORMS = {"finite": "finite-horizon form (exact sum over enumerated trajectories)",
         "entropy": "entropy-regularised infinite-horizon form (r -> r - lam log pi; exact occupancy sums)"}


def _err(a, b):
    abs_err = float(np.max(np.abs(a - b)))
    return abs_err, abs_err / max(float(np.max(np.abs(b))), 1e-300)


def run(ctx, finite_formulas: dict | None = None, entropy_formulas: dict | None = None) -> CheckResult:
    t0 = time.time()
    formulas = {"finite": {**FINITE_FORMULAS, **(finite_formulas or {})},
                "entropy": {**ENTROPY_FORMULAS, **(entropy_formulas or {})}}
    corrected = {"finite": FINITE_CORRECTED, "entropy": ENTROPY_CORRECTED}
    cases = tiny(ctx.family, 4)
    horizons = (3,) if ctx.quick else (2, 4)
    n_theta = 2 if ctx.quick else 4
    rng = ctx.rng("formula_audit")
    # per (form, eq): list of (abs, rel, corrected_abs, corrected_rel, case, phi, theta, H)
    rows: dict[tuple[str, str], list] = {(f, e): [] for f in formulas for e in CLAIMS}
    work = [(c, H, k) for c in cases for H in horizons for k in range(n_theta)]
    for case, H, k in ctx.bar(work, "formula audit"):
        theta = rng.normal(scale=1.0, size=(case.S, case.A))
        phi = case.phi
        for form in formulas:
            if form == "finite":
                terms = FiniteTerms(case, phi, theta, H)
                truth = finite_truth(case, phi, theta, H, terms.traj)
            elif H == horizons[0]:  # the infinite-horizon form does not depend on H: once per theta
                terms = OccupancyTerms(case, phi, theta)
                truth = entropy_truth(case, phi, theta)
            else:
                continue
            for i, eq in enumerate(CLAIMS):
                a, r = _err(formulas[form][eq](terms), truth[i])
                ca = cr = None
                if eq in corrected[form]:
                    ca, cr = _err(corrected[form][eq](terms), truth[i])
                rows[(form, eq)].append((a, r, ca, cr, case, phi, theta, H))
    claims = []
    for (form, eq), rs in rows.items():
        rel = np.array([x[1] for x in rs])
        absr = np.array([x[0] for x in rs])
        worst_i = int(np.argmax(rel))
        verdict = verdict_from_error(float(rel.max()), TOL)
        w = rs[worst_i]
        cex = None
        if verdict == "fails":
            cex = ctx.save_counterexample(f"formula_audit-{form}-{eq}", w[4].mdp, phi=w[5], theta=w[6],
                                          features=w[4].features, temperature=np.array(w[4].temperature),
                                          horizon=np.array(w[7]))
        corr = None
        if rs[0][2] is not None:
            crel = np.array([x[3] for x in rs])
            cabs = np.array([x[2] for x in rs])
            corr = {"expression": ("E[sum_h gamma^h r_h (sum_{j<=h} hess log pi_j + G_h G_h^T)], "
                                   "G_h = sum_{j<=h} grad log pi_j" if form == "finite" else
                                   "E[sum_h gamma^h r~_h (sum_{j<=h} hess log pi_j + G_h G_h^T)] "
                                   "+ lam sum_s d(s) hess log pi(.|s), r~ = r - lam log pi"),
                    "max_abs_error": float(cabs.max()), "max_rel_error": float(crel.max()),
                    "verdict": verdict_from_error(float(crel.max()), TOL)}
        claims.append(Claim(
            id=f"formula_audit.{form}.{eq}", claim=f"{CLAIMS[eq]}, {FORMS[form]}, equals autodiff of the exact value",
            verdict=verdict,
            measured={"max_abs_error": float(absr.max()), "max_rel_error": float(rel.max()),
                      "median_rel_error": float(np.median(rel)), "n_cases": len(rs),
                      "worst_case": w[4].name},
            settings={"tolerance_rel": TOL, "cases": sorted({x[4].name for x in rs}),
                      "horizons": list(horizons) if form == "finite" else "infinite (discounted)",
                      "theta": "N(0, 1) entries"},
            counterexample=cex, corrected=corr,
            notes=("relative error = max |formula - autodiff| / max |autodiff|")))
    # engine: SoftLowerLevel.policy_gradient is eq. (15) in closed form
    eng = []
    for case in cases:
        theta = rng.normal(size=(case.S, case.A))
        g_true = entropy_truth(case, case.phi, theta)[0]
        eng.append(_err(case.lower().policy_gradient(case.phi, theta).ravel(), g_true)[1])
    claims.append(Claim(
        id="formula_audit.engine.policy_gradient",
        claim="parl_core's SoftLowerLevel.policy_gradient (d(s) pi(a|s) A~(s,a), eq. 15 in closed form) equals autodiff",
        verdict=verdict_from_error(max(eng), TOL), measured={"max_rel_error": max(eng), "n_cases": len(eng)},
        settings={"tolerance_rel": TOL}))
    figs = [_figure(ctx, rows)]
    n_fail = sum(c.verdict == "fails" for c in claims)
    summary = (f"{len(claims) - n_fail} of {len(claims)} formula claims match autodiff to relative error {TOL:g}. "
               "Eq. (16) as written is not the Hessian: it omits the product-of-scores term "
               "E[sum_h gamma^h r_h G_h G_h^T] (and, in the entropy-regularised form, the terms from the "
               "theta-dependence of -lam log pi); the corrected expressions match autodiff (see `corrected`).")
    return CheckResult("formula_audit", "Formula audit: eqs. (15)-(17) against automatic differentiation", summary,
                       claims, figs, time.time() - t0)


def _figure(ctx, rows):
    import matplotlib.pyplot as plt
    path, rel = ctx.figure_path("formula_audit.png")
    labels, vals, colors = [], [], []
    for (form, eq), rs in rows.items():
        labels.append(f"{eq}\n{form}")
        vals.append(max(max(x[1] for x in rs), 1e-17))
        colors.append("tab:red" if vals[-1] > TOL else "tab:green")
        if rs[0][3] is not None:
            labels.append(f"{eq} corrected\n{form}")
            vals.append(max(max(x[3] for x in rs), 1e-17))
            colors.append("tab:red" if vals[-1] > TOL else "tab:blue")
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(range(len(vals)), vals, color=colors)
    ax.axhline(TOL, color="k", ls="--", lw=1, label=f"tolerance {TOL:g}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(vals)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("max relative error vs autodiff")
    ax.set_title("Paper's gradient formulas against autodiff of the exact value")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path, rel, "Worst relative error of each formula over the tiny MDPs (red: does not match; blue: the "
                       "corrected Hessian derived here).")
