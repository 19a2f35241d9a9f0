"""The bilevel problem max_phi G(phi) = U(phi, theta*(phi)) + Z(phi) and its hypergradient (eqs. 2-4, 8-14).

With g = dU/dtheta at theta* (the first factor of eq. 8-9) and J = d theta*/d phi,

    grad G(phi) = J^T g + partial_phi U + grad Z.                                             (8)-(9)

Four independent routes to grad G:

* ``soft_bellman`` (docs/theory.md section 4): theta* = (Q* - mean_a Q*)/lam and dQ*/dphi = (I - gamma P Pi*)^-1 dr/dphi,
  so J^T g = (1/lam) (g + Pi*^T w)^T dr/dphi with ONE adjoint solve (I - gamma P_pi*)^T w = gamma P^T g
  of size |S|. Scales to sparse MDPs with 10^5 states.
* ``ift`` (eqs. 10-13): J = -[hess_theta V]^-1 d2V/dtheta dphi, inverted on the gauge subspace
  sum_a theta(s,a) = 0 (where it is nonsingular). ``solver="dense"`` builds the exact Hessian by automatic
  differentiation and records its condition number in ``last_info["condition_number"]``; ``solver="cg"``
  (:mod:`parl_core.ift`) solves the one adjoint system by preconditioned CG on exact Hessian-vector products,
  never forming H, and records ``condition_estimate``; ``"auto"`` is dense up to IFT_DENSE_LIMIT state-action
  pairs.
* ``finite_difference``: central differences of the whole map phi -> G(phi) (each G solved exactly).
* ``unrolled``: automatic differentiation through K differentiable inner steps (natural PG by default).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.func import jacfwd, jacrev

from .ift import ift_adjoint
from .linalg import solve_discounted
from .lower import SoftLowerLevel
from .policy import softmax
from .rewards import check_phi
from .upper import UpperObjective

METHODS = ("soft_bellman", "ift", "finite_difference", "unrolled")
IFT_DENSE_LIMIT = 1000  # state-action pairs; above it the 'ift' route is matrix-free by default
IFT_SOLVERS = ("auto", "dense", "cg")

Regularizer = Callable[[torch.Tensor], torch.Tensor]


def quadratic_regularizer(coef: float, center: np.ndarray) -> Regularizer:
    """Z(phi) = -coef * ||phi - center||^2 (a cost on moving phi away from ``center``)."""
    c = torch.as_tensor(np.asarray(center, dtype=np.float64))
    return lambda phi: -coef * ((phi - c) ** 2).sum()


class BilevelProblem:
    """Upper objective ``upper`` evaluated at the lower level's optimum, plus an optional regulariser Z(phi)."""

    def __init__(self, lower: SoftLowerLevel, upper: UpperObjective, regularizer: Regularizer | None = None):
        self.lower, self.upper, self.regularizer = lower, upper, regularizer
        self.last_info: dict = {}

    @property
    def n_params(self) -> int:
        return self.lower.n_params

    # --------------------------------------------------------------- values
    def regularizer_value_and_grad(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        if self.regularizer is None:
            return 0.0, np.zeros(self.n_params)
        p = torch.as_tensor(phi).clone().requires_grad_(True)
        z = self.regularizer(p)
        (g,) = torch.autograd.grad(z, p)
        return float(z.detach()), g.numpy()

    def objective(self, phi: np.ndarray) -> float:
        """G(phi), exact."""
        phi = check_phi(phi, self.n_params)
        return self.objective_at(phi, self.lower.solve(phi))

    def objective_at(self, phi: np.ndarray, theta: np.ndarray) -> float:
        """U(phi, theta) + Z(phi) at an arbitrary policy (e.g. theta_K)."""
        return self.upper.value(self.lower, phi, theta) + self.regularizer_value_and_grad(phi)[0]

    # ------------------------------------------------------- hypergradients
    def hypergradient(self, phi: np.ndarray, method: str = "soft_bellman", *, theta: np.ndarray | None = None,
                      **options) -> np.ndarray:
        """grad G(phi) by ``method``; a length-n array.

        ``theta`` (soft_bellman and ift only) evaluates the same formula at another policy, e.g. the inner
        iterate theta_K: that is the plug-in estimator of eq. (14) used by A-PARL.
        Options: ift ``solver`` ('auto', 'dense' or 'cg'); finite_difference ``step`` (default 1e-5);
        unrolled ``steps`` (K, default 100),
        ``lr`` (default 1.0), ``kind`` ('npg' or 'pg'), ``theta0`` (default zeros).
        """
        phi = check_phi(phi, self.n_params)
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        if method in ("finite_difference", "unrolled") and theta is not None:
            raise ValueError(f"theta: the {method} route differentiates the whole map and takes no theta")
        route = getattr(self, f"_hypergradient_{method}")
        return route(phi, theta, **options) if method in ("soft_bellman", "ift") else route(phi, **options)

    def direct_gradient(self, phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """partial_phi U(phi, theta) + grad Z(phi): eq. (8) without the policy-dependence term J^T g."""
        return self.upper.grad_phi(self.lower, phi, theta) + self.regularizer_value_and_grad(phi)[1]

    def _hypergradient_soft_bellman(self, phi, theta=None) -> np.ndarray:
        lower, mdp = self.lower, self.lower.mdp
        theta = lower.solve(phi) if theta is None else np.asarray(theta, dtype=np.float64)
        pi = softmax(theta)
        g = self.upper.grad_theta(lower, phi, theta)
        S, A = mdp.shape
        rhs = mdp.gamma * (mdp.P.T @ g.ravel())
        w = solve_discounted(mdp.policy_matrix(pi), mdp.gamma, rhs, transpose=True)
        weight = (g + pi * w[:, None]) / lower.temperature
        jt_g = np.einsum("sa,san->n", weight, lower.reward.jacobian(phi))
        self.last_info = {"method": "soft_bellman"}
        return jt_g + self.direct_gradient(phi, theta)

    def ift_jacobian(self, phi: np.ndarray, theta: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """J = d theta*/d phi (S, A, n) by the implicit function theorem on the gauge subspace, and the
        condition number of the restricted Hessian.

        States that cannot be reached from mu (zero discounted occupancy under every softmax policy) do not
        enter V, so the Hessian is zero there; they do not enter G either. The inverse is taken on the gauge
        subspace of the reachable states and J is set to zero on the others."""
        lower = self.lower
        S, A = lower.mdp.shape
        theta = lower.solve(phi) if theta is None else np.asarray(theta, dtype=np.float64)
        Hg, B = lower.gauge_hessian(phi, theta)
        phi_t, theta_t = torch.as_tensor(phi), torch.as_tensor(theta)
        M = jacfwd(jacrev(lower.torch_value, argnums=1), argnums=0)(phi_t, theta_t)
        M = M.reshape(S * A, -1).numpy()
        J = -B @ np.linalg.solve(Hg, B.T @ M)
        return J.reshape(S, A, -1), float(np.linalg.cond(Hg))

    def _hypergradient_ift(self, phi, theta=None, solver: str = "auto") -> np.ndarray:
        if solver not in IFT_SOLVERS:
            raise ValueError(f"solver: expected one of {IFT_SOLVERS}, got {solver!r}")
        S, A = self.lower.mdp.shape
        if solver == "auto":
            solver = "dense" if S * A <= IFT_DENSE_LIMIT else "cg"
        theta = self.lower.solve(phi) if theta is None else np.asarray(theta, dtype=np.float64)
        g = self.upper.grad_theta(self.lower, phi, theta)
        if solver == "dense":
            J, cond = self.ift_jacobian(phi, theta)
            jt_g, info = np.einsum("sa,san->n", g, J), {"condition_number": cond}
        else:
            jt_g, info = ift_adjoint(self.lower, phi, theta, g)
        self.last_info = {"method": "ift", "solver": solver, **info}
        return jt_g + self.direct_gradient(phi, theta)

    def _hypergradient_finite_difference(self, phi, step: float = 1e-5) -> np.ndarray:
        grad = np.empty(self.n_params)
        for i in range(self.n_params):
            h = step * max(1.0, abs(phi[i]))
            e = np.zeros_like(phi)
            e[i] = h
            grad[i] = (self.objective(phi + e) - self.objective(phi - e)) / (2 * h)
        self.last_info = {"method": "finite_difference", "step": step}
        return grad

    def _hypergradient_unrolled(self, phi, steps: int = 100, lr: float = 1.0, kind: str = "npg",
                                theta0: np.ndarray | None = None) -> np.ndarray:
        lower = self.lower
        phi_t = torch.as_tensor(phi).clone().requires_grad_(True)
        th0 = torch.zeros(lower.mdp.shape, dtype=torch.float64) if theta0 is None else torch.as_tensor(theta0)
        theta_K = lower.torch_improve(phi_t, th0, steps, lr, kind)
        total = self.upper.torch_value(lower, phi_t, theta_K)
        if self.regularizer is not None:
            total = total + self.regularizer(phi_t)
        (g,) = torch.autograd.grad(total, phi_t)
        self.last_info = {"method": "unrolled", "steps": steps, "kind": kind, "lr": lr}
        return g.numpy()
