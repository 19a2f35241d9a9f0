"""Matrix-free implicit differentiation of theta*(phi) (eqs. 10-13) with exact Hessian-vector products.

The IFT route of eq. (12) needs J^T g = -M^T [hess_theta V]^-1 g, with M = d2V/(dtheta dphi) and g = dU/dtheta.
Restricted to the gauge subspace of the reachable states (orthonormal basis B, docs/theory.md section 4) this is ONE
symmetric solve:

    K y = B^T g,   K = -B^T H B,   J^T g = M^T (B y).

Nothing of size (S A)^2 is formed: H x and M^T z are directional derivatives of the exact policy gradient
dV/dtheta = d * pi * (Q - lam log pi - v) and of dV/dphi = sum_{s,a} d(s) pi(a|s) dr(s,a)/dphi. Along a
direction x in theta (dlog pi = x - <pi, x>_s, dpi = pi * dlog pi):

    dv = (I - gamma P_pi)^-1 b,           b(s) = sum_a dpi(s,a) (Q(s,a) - lam log pi(a|s))
    dd = (I - gamma P_pi)^-T gamma P^T (d * dpi),      dQ = gamma P dv,
    H x = dd * pi * adv + d * dpi * adv + d * pi * (dQ - lam dlog pi - dv),    adv = Q - lam log pi - v,
    M^T x = sum_{s,a} (dd(s) pi(a|s) + d(s) dpi(s,a)) dr(s,a)/dphi,

two sparse solves of size |S| per product, in float64.

At the optimum the soft advantage vanishes (adv = 0, b = 0), so H(theta*) is block diagonal:
H_ss = -lam d(s) (diag pi_s - pi_s pi_s^T). Its exact inverse on the gauge subspace,
x -> gauge(x / pi_s) / (lam d(s)), preconditions the conjugate-gradient solve (one iteration at theta*,
a few at a plug-in theta_K), and the block condition number is cond(K) at theta* (an estimate elsewhere):
the 1/min pi* growth of docs/theory.md section 4, made exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from .linalg import SolveError, solve_discounted
from .lower import SoftLowerLevel
from .policy import gauge, gauge_basis, log_softmax, softmax


@dataclass
class SoftDerivatives:
    """Second derivatives of V_lam at (phi, theta), as products with vectors (S, A)."""

    lower: SoftLowerLevel
    phi: np.ndarray
    theta: np.ndarray

    def __post_init__(self):
        lower = self.lower
        self.pi = softmax(self.theta)
        self.logpi = log_softmax(self.theta)
        ev = lower.evaluate(self.phi, self.pi)
        self.q, self.v, self.d = ev.q, ev.v, ev.d
        self.adv = self.q - lower.temperature * self.logpi - self.v[:, None]
        self.P_pi = lower.mdp.policy_matrix(self.pi)

    def _tangent(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dlog pi, dpi, dd) along the logit direction x."""
        mdp = self.lower.mdp
        dlogpi = x - np.sum(self.pi * x, axis=1, keepdims=True)
        dpi = self.pi * dlogpi
        rhs = mdp.gamma * (mdp.PT @ (self.d[:, None] * dpi).ravel())
        dd = solve_discounted(self.P_pi, mdp.gamma, rhs, transpose=True)
        return dlogpi, dpi, dd

    def hvp(self, x: np.ndarray) -> np.ndarray:
        """hess_theta V_lam . x, exact."""
        lower, mdp = self.lower, self.lower.mdp
        lam = lower.temperature
        dlogpi, dpi, dd = self._tangent(x)
        b = np.sum(dpi * (self.q - lam * self.logpi), axis=1)
        dv = solve_discounted(self.P_pi, mdp.gamma, b)
        dq = mdp.gamma * (mdp.P @ dv).reshape(mdp.shape)
        dadv = dq - lam * dlogpi - dv[:, None]
        d, pi = self.d[:, None], self.pi
        return dd[:, None] * pi * self.adv + d * dpi * self.adv + d * pi * dadv

    def mixed_vp(self, z: np.ndarray, jacobian: np.ndarray) -> np.ndarray:
        """M^T z = d/deps grad_phi V_lam(phi, theta + eps z), with ``jacobian`` = dr/dphi (S, A, n)."""
        _, dpi, dd = self._tangent(z)
        return np.einsum("sa,san->n", dd[:, None] * self.pi + self.d[:, None] * dpi, jacobian)


@dataclass
class GaugeSystem:
    """K = -B^T H B on the gauge subspace of the reachable states, as a LinearOperator, with its
    block-diagonal preconditioner (the exact inverse of K at theta*)."""

    deriv: SoftDerivatives

    def __post_init__(self):
        S, A = self.deriv.lower.mdp.shape
        self.keep = self.deriv.lower.mdp.reachable
        self.Q = gauge_basis(A)
        self.n = int(self.keep.sum()) * (A - 1)

    def lift(self, y: np.ndarray) -> np.ndarray:
        """B y: (k (A-1),) -> (S, A)."""
        out = np.zeros(self.deriv.lower.mdp.shape)
        out[self.keep] = y.reshape(-1, self.Q.shape[1]) @ self.Q.T
        return out

    def restrict(self, x: np.ndarray) -> np.ndarray:
        """B^T x: (S, A) -> (k (A-1),)."""
        return (x[self.keep] @ self.Q).ravel()

    def operator(self) -> spla.LinearOperator:
        return spla.LinearOperator((self.n, self.n), matvec=lambda y: -self.restrict(self.deriv.hvp(self.lift(y))),
                                   dtype=np.float64)

    def preconditioner(self) -> spla.LinearOperator:
        lam = self.deriv.lower.temperature
        pi, d = np.maximum(self.deriv.pi[self.keep], 1e-300), self.deriv.d[self.keep]

        def apply(y):
            x = y.reshape(-1, self.Q.shape[1]) @ self.Q.T
            return (gauge(x / pi) / (lam * d[:, None]) @ self.Q).ravel()

        return spla.LinearOperator((self.n, self.n), matvec=apply, dtype=np.float64)

    def block_condition_number(self) -> float:
        """cond of blockdiag_s lam d(s) Q^T (diag pi_s - pi_s pi_s^T) Q: cond(K) at theta*."""
        lam = self.deriv.lower.temperature
        pi, d = self.deriv.pi[self.keep], self.deriv.d[self.keep]
        cov = pi[:, :, None] * np.eye(pi.shape[1]) - pi[:, :, None] * pi[:, None, :]
        eig = np.linalg.eigvalsh(np.einsum("ai,sab,bj->sij", self.Q, cov, self.Q)) * (lam * d[:, None])
        return float(eig.max() / eig.min()) if eig.size and eig.min() > 0 else float("inf")


def ift_adjoint(lower: SoftLowerLevel, phi: np.ndarray, theta: np.ndarray, g: np.ndarray, *,
                rtol: float = 1e-12, maxiter: int = 500) -> tuple[np.ndarray, dict]:
    """J^T g (n,) by eqs. (10)-(13) without forming H: preconditioned CG on K y = B^T g (GMRES if K is not
    positive definite at this theta), then one mixed product. Returns it and solver information."""
    deriv = SoftDerivatives(lower, phi, theta)
    system = GaugeSystem(deriv)
    rhs = system.restrict(np.asarray(g, dtype=np.float64))
    info = {"solver": "cg", "iterations": 0, "condition_estimate": system.block_condition_number(),
            "states_kept": int(system.keep.sum())}
    if system.n == 0 or not np.any(rhs):
        return np.zeros(lower.n_params), info
    op, M = system.operator(), system.preconditioner()

    def count(_):
        info["iterations"] += 1

    with np.errstate(over="ignore", invalid="ignore"):
        y, flag = spla.cg(op, rhs, rtol=rtol, atol=0.0, maxiter=maxiter, M=M, callback=count)
        if flag != 0 and np.all(np.isfinite(y)):  # K not positive definite at this theta
            info["solver"] = "gmres"
            y, flag = spla.gmres(op, rhs, rtol=rtol, atol=0.0, restart=50, maxiter=max(1, maxiter // 50), M=M,
                                 callback=count, callback_type="pr_norm")
    if flag != 0 or not np.all(np.isfinite(y)):
        raise SolveError(f"ift: the gauge-restricted Hessian system did not converge (cg and gmres, flag={flag}; "
                         f"condition estimate {info['condition_estimate']:.3g}, min pi = {deriv.pi.min():.3g}). "
                         "A nearly deterministic policy is beyond float64 for the implicit route: use 'soft_bellman'")
    info["residual"] = float(np.linalg.norm(op @ y - rhs) / np.linalg.norm(rhs))
    return deriv.mixed_vp(system.lift(y), lower.reward.jacobian(phi)), info
