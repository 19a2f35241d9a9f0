"""The entropy-regularised lower level (docs/theory.md section 2; the paper's eq. 3 made well posed).

    V_lam(phi, theta) = E_{s0 ~ mu}[ sum_h gamma^h ( r_phi(s_h, a_h) - lam log pi_theta(a_h|s_h) ) ]

Closed form of the unique optimum (soft Bellman optimality):

    Q*(s,a) = r_phi(s,a) + gamma sum_s' P(s'|s,a) V*(s'),   V*(s) = lam log sum_a exp(Q*(s,a)/lam),
    theta*(s,a) = (Q*(s,a) - mean_a Q*(s,a)) / lam            (sum-zero gauge)

``solve`` finds it by soft policy iteration (Newton's method on the soft Bellman equation: exact policy
evaluation, then pi <- softmax(Q/lam)), which converges quadratically near the optimum.

Exact policy gradient of eq. (15) for the regularised objective, with d the discounted state occupancy:

    dV/dtheta(s,a) = d(s) pi(a|s) ( Q_pi(s,a) - lam log pi(a|s) - v_pi(s) ).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.func import hessian

from .linalg import solve_discounted
from .mdp import TabularMDP
from .policy import gauge, gauge_basis, gauge_torch, log_softmax, softmax
from .rewards import Reward, as_reward, check_phi

TORCH_DENSE_LIMIT = 4000  # states; the autodiff routes build dense (S, A, S) tensors


@dataclass(frozen=True)
class Evaluation:
    """Exact soft evaluation of a policy: state values v (S,), action values Q (S, A), occupancy d (S,).

    v(s) = sum_a pi(a|s) (Q(s,a) - lam log pi(a|s)) includes the entropy bonus of the current step;
    Q(s,a) = r(s,a) + gamma sum_s' P(s'|s,a) v(s') does not (the entropy of the action already taken is not
    part of Q, as in soft Q-learning and SAC)."""

    pi: np.ndarray
    v: np.ndarray
    q: np.ndarray
    d: np.ndarray | None


class SoftLowerLevel:
    """Entropy-regularised policy optimisation for the reward r_phi on ``mdp`` at temperature lam > 0."""

    def __init__(self, mdp: TabularMDP, reward: Reward, temperature: float):
        if not isinstance(mdp, TabularMDP):
            raise ValueError(f"mdp: expected a TabularMDP, got {type(mdp).__name__}")
        lam = float(temperature)
        if not np.isfinite(lam) or lam <= 0:
            raise ValueError(
                f"temperature: must be > 0, got {temperature!r}. Without entropy regularisation the softmax "
                "policy's optimum is deterministic, i.e. theta* lies at infinity, so there is no finite optimum "
                "and no implicit derivative (docs/theory.md section 2).")
        self.mdp = mdp
        self.reward = as_reward(reward)
        if tuple(self.reward.shape) != mdp.shape:
            raise ValueError(f"reward: shape {tuple(self.reward.shape)} does not match the MDP's (S, A) = {mdp.shape}")
        self.temperature = lam
        self._cache: tuple[bytes, np.ndarray] | None = None
        self._torch_P: torch.Tensor | None = None

    @property
    def n_params(self) -> int:
        return self.reward.n_params

    # ------------------------------------------------------------ evaluation
    def evaluate(self, phi: np.ndarray, pi: np.ndarray, occupancy: bool = True) -> Evaluation:
        """Exact soft values of policy ``pi`` (S, A) for reward r_phi; the discounted occupancy
        d = (I - gamma P_pi)^-T mu only when ``occupancy``."""
        mdp, lam = self.mdp, self.temperature
        r = self.reward.table(phi)
        S, A = mdp.shape
        logpi = np.log(np.clip(pi, 1e-300, None))
        r_pi = np.sum(pi * (r - lam * logpi), axis=1)
        P_pi = mdp.policy_matrix(pi)
        v = solve_discounted(P_pi, mdp.gamma, r_pi)
        q = r + mdp.gamma * (mdp.P @ v).reshape(S, A)
        d = solve_discounted(P_pi, mdp.gamma, mdp.initial, transpose=True) if occupancy else None
        return Evaluation(pi=pi, v=v, q=q, d=d)

    def value(self, phi: np.ndarray, theta: np.ndarray) -> float:
        """V_lam(phi, theta) = mu^T v_pi, exact."""
        ev = self.evaluate(phi, softmax(self._check_theta(theta)), occupancy=False)
        return float(self.mdp.initial @ ev.v)

    def policy_gradient(self, phi: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Exact grad_theta V_lam(phi, theta), shape (S, A); zero-sum per state."""
        pi = softmax(self._check_theta(theta))
        ev = self.evaluate(phi, pi)
        adv = ev.q - self.temperature * log_softmax(theta) - ev.v[:, None]
        return ev.d[:, None] * pi * adv

    # ----------------------------------------------------------------- solve
    def solve(self, phi: np.ndarray, tol: float = 1e-13, max_iter: int = 200) -> np.ndarray:
        """theta*(phi) in the sum-zero gauge, by soft policy iteration to sup-norm change < tol in Q."""
        phi = check_phi(phi, self.n_params)
        key = phi.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1].copy()
        S, A = self.mdp.shape
        lam = self.temperature
        pi = np.full((S, A), 1.0 / A)
        q_old = None
        for _ in range(max_iter):
            q = self.evaluate(phi, pi, occupancy=False).q
            pi = softmax(q / lam)
            if q_old is not None and np.max(np.abs(q - q_old)) <= tol * max(1.0, np.max(np.abs(q))):
                break
            q_old = q
        else:
            raise RuntimeError(f"soft policy iteration did not converge in {max_iter} iterations")
        theta = gauge(q / lam)
        self._cache = (key, theta)
        return theta.copy()

    def policy_star(self, phi: np.ndarray) -> np.ndarray:
        return softmax(self.solve(phi))

    # ---------------------------------------------------- inner-loop updates
    def pg_step(self, phi: np.ndarray, theta: np.ndarray, lr: float) -> np.ndarray:
        """One exact policy-gradient ascent step theta + lr * grad_theta V (the inner loop of A-PARL)."""
        return gauge(theta + lr * self.policy_gradient(phi, theta))

    def npg_step(self, phi: np.ndarray, theta: np.ndarray, lr: float) -> np.ndarray:
        """Entropy-regularised natural policy gradient (Cen et al. 2021) in logit form:
        theta <- (1 - lr) theta + lr Q_pi / lam, with lr in (0, 1]; lr = 1 is soft policy iteration."""
        if not (0 < lr <= 1):
            raise ValueError(f"lr: the natural-gradient step must lie in (0, 1], got {lr}")
        q = self.evaluate(phi, softmax(theta), occupancy=False).q
        return gauge((1 - lr) * theta + lr * q / self.temperature)

    def improve(self, phi: np.ndarray, theta: np.ndarray, steps: int, lr: float, kind: str = "pg") -> np.ndarray:
        """``steps`` inner updates of kind ``"pg"`` or ``"npg"`` from ``theta``."""
        step = {"pg": self.pg_step, "npg": self.npg_step}.get(kind)
        if step is None:
            raise ValueError(f"kind: expected 'pg' or 'npg', got {kind!r}")
        theta = gauge(self._check_theta(theta))
        for _ in range(int(steps)):
            theta = step(phi, theta, lr)
        return theta

    def safe_pg_lr(self, phi: np.ndarray) -> float:
        """1/L with L = (8 r_max + lam (4 + 8 log A)) / (1 - gamma)^3, the smoothness bound of the
        entropy-regularised softmax objective (Mei et al. 2020, Lemma 14)."""
        r_max = float(np.max(np.abs(self.reward.table(phi))))
        A, g = self.mdp.n_actions, self.mdp.gamma
        return (1 - g) ** 3 / (8 * r_max + self.temperature * (4 + 8 * np.log(A)))

    # -------------------------------------------------------- torch (dense)
    def torch_transitions(self) -> torch.Tensor:
        S, A = self.mdp.shape
        if S > TORCH_DENSE_LIMIT:
            raise ValueError(f"mdp: {S} states is too many for the dense autodiff routes "
                             f"(limit {TORCH_DENSE_LIMIT}); use the 'soft_bellman' hypergradient")
        if self._torch_P is None:
            self._torch_P = torch.as_tensor(self.mdp.dense_transitions())
        return self._torch_P

    def torch_evaluate(self, phi: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable exact soft evaluation: (v (S,), Q (S, A))."""
        P = self.torch_transitions()
        S, A = self.mdp.shape
        r = self.reward.torch(phi)
        logpi = torch.log_softmax(theta, dim=-1)
        pi = logpi.exp()
        r_pi = (pi * (r - self.temperature * logpi)).sum(-1)
        P_pi = torch.einsum("sa,sat->st", pi, P)
        eye = torch.eye(S, dtype=P.dtype)
        v = torch.linalg.solve(eye - self.mdp.gamma * P_pi, r_pi)
        q = r + self.mdp.gamma * torch.einsum("sat,t->sa", P, v)
        return v, q

    def torch_value(self, phi: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """V_lam(phi, theta) as a differentiable torch scalar."""
        v, _ = self.torch_evaluate(phi, theta)
        return torch.as_tensor(self.mdp.initial) @ v

    def gauge_hessian(self, phi: np.ndarray, theta: np.ndarray,
                      reachable_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """hess_theta V_lam(phi, theta) restricted to the gauge subspace, by automatic differentiation.

        Returns (B^T H B, B): H is the dense (S*A, S*A) Hessian, B (S*A, k*(A-1)) has orthonormal columns spanning
        the gauge subspace (each state's logits summing to zero) of the k states kept: those reachable from mu
        (positive discounted occupancy, the same support for every softmax policy; V does not depend on the
        logits of the others, so H is zero there) or all S with ``reachable_only=False``. Lemma 2's strong
        concavity is the smallest eigenvalue of -B^T H B; the IFT hypergradient (eqs. 10-13) inverts it."""
        S, A = self.mdp.shape
        theta = self._check_theta(theta)
        self.torch_transitions()  # build the dense tensor outside the functorch transforms
        H = hessian(self.torch_value, argnums=1)(torch.as_tensor(check_phi(phi, self.n_params)),
                                                 torch.as_tensor(theta)).reshape(S * A, S * A).numpy()
        keep = self.mdp.reachable if reachable_only else np.ones(S, bool)
        B = np.kron(np.eye(S)[:, keep], gauge_basis(A))
        return B.T @ H @ B, B

    def torch_improve(self, phi: torch.Tensor, theta: torch.Tensor, steps: int, lr: float,
                      kind: str = "npg") -> torch.Tensor:
        """Differentiable inner loop (for the 'unrolled' hypergradient): K steps of npg or pg."""
        if kind not in ("pg", "npg"):
            raise ValueError(f"kind: expected 'pg' or 'npg', got {kind!r}")
        for _ in range(int(steps)):
            if kind == "npg":
                _, q = self.torch_evaluate(phi, theta)
                theta = gauge_torch((1 - lr) * theta + lr * q / self.temperature)
            else:
                th = theta if theta.requires_grad else theta.requires_grad_(True)
                g, = torch.autograd.grad(self.torch_value(phi, th), th, create_graph=True)
                theta = gauge_torch(th + lr * g)
        return theta

    def _check_theta(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != self.mdp.shape:
            raise ValueError(f"theta: expected shape {self.mdp.shape}, got {theta.shape}")
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta: contains NaN or inf")
        return theta
