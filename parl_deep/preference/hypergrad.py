"""Term 2 estimators for A-PARL on neural estimators (docs/theory.md sections 4-5; the paper's eqs. 8-14).

The RLHF upper objective is G(phi) = E_{tau0, tau1 ~ rho(.; theta*(phi)), y}[ f_phi(tau0, tau1, y) ] with
f = y log sig(R_phi(tau0) - R_phi(tau1)) + (1 - y) log sig(R_phi(tau1) - R_phi(tau0)). Its gradient is

    Term 1 = E[ grad_phi f ]                                  (the usual reward-model gradient, PEBBLE's)
    Term 2 = E[ f * sum_{seg, h} grad_phi log pi_{theta*(phi)}(a_h | s_h) ]     (how phi moves the policy)

The sum over segments runs over the sides the current policy generated (``PairBatch.policy_sides``): both for
eq. 5's pairs, segment 0 alone for a designer utility scored against a fixed reference (the win rate, eqs. 3-4,
:mod:`parl_deep.preference.win_rate`), whose reference segment's probability does not depend on phi. A per-pair
f that does not depend on phi (such a utility's one-sample estimate) has Term 1 = 0.

Every estimator below works from a batch of pairs of segments sampled from the current policy; each segment is
followed by its continuation (the rest of the stored trajectory), so that psi(s,a) = dQ/dphi(s,a) = E[sum_k
gamma^k grad_phi r_phi(s_{h+k}, a_{h+k}) | s_h = s, a_h = a] can be estimated by the discounted Monte Carlo sum
MC_h(phi) = sum_{k >= h} gamma^{k-h} r_phi(s_k, a_k) differentiated in phi.

* ``soft-bellman`` (no Hessian): grad_phi log pi*(a|s) = (psi(s,a) - E_{a'~pi} psi(s,a')) / lam. Plugging the
  Monte Carlo sum straight into f * (...) is biased (f depends on the steps that MC_h also sums), so we regress f
  on (h, s_h, a_h): fbar(h,s,a) = E[f | h, s_h=s, a_h=a]; then, exactly,
      Term 2 = (1/lam) E[ sum_h (fbar(h,s_h,a_h) - E_{a'~pi} fbar(h,s_h,a')) * MC_h(phi) ]   (gradient in phi),
  a single backward pass: "the discounted reward gradient along sampled segments, minus its policy-averaged
  baseline, divided by the entropy temperature".
* ``ift-cg`` (the paper's route): Term 2 = J^T g with J = -H^-1 M (eqs. 10-13). g = E[(f - mean f) grad_theta log
  rho] (score function), A = -H is applied through Hessian-vector products of the sampled lower-level objective
  L(theta) = mean_i E_{a~pi_theta}[Q(s_i,a) - lam log pi_theta(a|s_i)] (a critic Q), v = (A + delta I)^-1 g by
  conjugate gradient (damping delta, iteration cap), and Term 2 = M^T v is a mixed product by automatic
  differentiation: grad_phi mean_i[(v . grad_theta log pi(a_i|s_i)) MC_i(phi)].
* ``neumann``: the same v by a truncated Neumann series v = alpha sum_k (I - alpha (A + delta I))^k g.
* ``none``: Term 2 dropped (PEBBLE's update), for ablations.

Models are torch modules: a policy with ``log_prob(obs, act)`` and ``expected(obs, fn)`` (E_{a~pi}[fn(obs, a)],
exact for discrete actions, reparameterised samples for continuous ones; ``fn`` may receive the states tiled
k times in blocks, ``obs.repeat(k, 1)``, with matching actions), a reward r_phi(obs, act) -> (N,)
whose parameters are phi, and for ift-cg/neumann a critic Q(obs, act) -> (N,). They run unchanged on the tabular
softmax policy and linear reward of :mod:`parl_deep.preference.tabular` (used to test them against parl_core's exact
Term 2) and on SAC's Gaussian actor with an MLP reward ensemble.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from parl_deep.nets import mlp

ESTIMATORS = ("soft-bellman", "ift-cg", "neumann", "none")


class Policy(Protocol):
    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor: ...

    def expected(self, obs: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor: ...

    def parameters(self): ...


@dataclass
class PairBatch:
    """Pairs of trajectories from the current policy: obs (B, 2, L, obs_dim), act (B, 2, L, act_dim); the first
    ``segment`` steps are the compared segments, the rest their continuations; labels (B,) in {0, 0.5, 1}
    with 1 meaning segment 0 preferred. ``mask`` (B, 2, L), optional: 1 where the continuation exists (a
    trajectory that ended or left the stored window is cut there; the segment itself must be complete).
    ``policy_sides``: the sides the current policy generated, (0, 1) (default: eq. 5's pairs) or (0,) (segment
    1 from a fixed reference): Term 2's score, Monte Carlo sums and sampled states use these sides only."""

    obs: torch.Tensor
    act: torch.Tensor
    labels: torch.Tensor
    segment: int
    mask: torch.Tensor | None = None
    policy_sides: tuple[int, ...] = (0, 1)

    def __post_init__(self):
        B, two, L = self.obs.shape[:3]
        if two != 2 or self.act.shape[:3] != (B, 2, L) or self.labels.shape != (B,):
            raise ValueError(f"PairBatch: inconsistent shapes obs {tuple(self.obs.shape)}, act "
                             f"{tuple(self.act.shape)}, labels {tuple(self.labels.shape)}")
        if not (1 <= self.segment <= L):
            raise ValueError(f"segment: must lie in [1, {L}], got {self.segment}")
        if self.mask is not None:
            if self.mask.shape != (B, 2, L):
                raise ValueError(f"mask: expected shape {(B, 2, L)}, got {tuple(self.mask.shape)}")
            if not bool((self.mask[:, :, :self.segment] > 0).all()):
                raise ValueError("mask: the compared segments must be complete")
        if tuple(self.policy_sides) not in ((0, 1), (0,), (1,)):
            raise ValueError(f"policy_sides: expected (0, 1), (0,) or (1,), got {self.policy_sides!r}")
        self.policy_sides = tuple(self.policy_sides)

    def on_policy(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 2, ...) restricted to the policy sides, (B, S, ...) (``x`` itself when both are)."""
        return x if self.policy_sides == (0, 1) else x[:, list(self.policy_sides)]

    def policy_states(self) -> torch.Tensor:
        """(N, obs_dim): the segment steps' observations on the policy sides (the lower level's states)."""
        return self.on_policy(self.obs[:, :, :self.segment]).reshape(-1, self.obs.shape[-1])

    def tail_sums(self, reward: torch.nn.Module, gamma: float) -> torch.Tensor:
        """MC_h(phi) for h < segment, (B, S, segment) on the S policy sides: discounted sums of r_phi over the
        rest of each trajectory (up to its mask)."""
        r = _rewards(reward, self.on_policy(self.obs), self.on_policy(self.act))
        if self.mask is not None:
            r = r * self.on_policy(self.mask).to(r.dtype)
        return discounted_tail_sums(r, gamma)[..., :self.segment]


@dataclass
class Term2Result:
    term2: torch.Tensor          # flat vector over the reward's parameters
    term1: torch.Tensor          # flat vector: E[grad_phi f]
    objective: float             # mean f (the sampled upper objective)
    seconds: float
    info: dict = field(default_factory=dict)


def _flat(grads, params) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def _rewards(reward: torch.nn.Module, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    lead = obs.shape[:-1]
    return reward(obs.reshape(-1, obs.shape[-1]), act.reshape(-1, act.shape[-1])).reshape(lead)


def pair_objective(reward: torch.nn.Module, batch: PairBatch) -> torch.Tensor:
    """f per pair (B,): the Bradley-Terry log-likelihood of the labels under R_phi (eq. 6)."""
    T = batch.segment
    R = _rewards(reward, batch.obs[:, :, :T], batch.act[:, :, :T]).sum(-1)  # (B, 2)
    y = batch.labels.to(R.dtype)
    return y * F.logsigmoid(R[:, 0] - R[:, 1]) + (1 - y) * F.logsigmoid(R[:, 1] - R[:, 0])


def brier_objective(reward: torch.nn.Module, batch: PairBatch) -> torch.Tensor:
    """f per pair (B,): minus the Brier score, -(P_phi(tau0 > tau1) - y)^2. The score is proper (for each pair its
    expectation over y is largest at P_phi = p_true); with a rational teacher y = p_true and f is exactly minus
    the Brier excess (P_phi - p_true)^2 of ``parl_core.PreferenceObjective(score="brier")``, which carries no
    reward for steering the policy to pairs that are easy to label (eq. 5's entropy part does)."""
    T = batch.segment
    R = _rewards(reward, batch.obs[:, :, :T], batch.act[:, :, :T]).sum(-1)  # (B, 2)
    return -(torch.sigmoid(R[:, 0] - R[:, 1]) - batch.labels.to(R.dtype)) ** 2


# the per-pair upper objectives f an estimator can differentiate (``estimate(..., objective=...)``)
UPPER_OBJECTIVES: dict[str, Callable[[torch.nn.Module, PairBatch], torch.Tensor]] = {
    "likelihood": pair_objective, "brier": brier_objective}


def discounted_tail_sums(r: torch.Tensor, gamma: float) -> torch.Tensor:
    """MC_h = sum_{k >= h} gamma^(k-h) r_k along the last axis (differentiable)."""
    L = r.shape[-1]
    k = torch.arange(L, dtype=r.dtype, device=r.device)
    w = torch.triu(gamma ** (k[None, :] - k[:, None]).clamp(min=0))  # w[h, k] = gamma^(k-h) for k >= h
    return r @ w.T


class Regressor(Protocol):
    def fit(self, x: torch.Tensor, y: torch.Tensor) -> "Regressor": ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class MLPRegressor:
    """Scalar regression by a small MLP trained with Adam on the squared error (the default for continuous
    observations and actions)."""

    def __init__(self, hidden: int = 128, epochs: int = 200, lr: float = 1e-3, seed: int = 0):
        self.hidden, self.epochs, self.lr, self.seed = hidden, epochs, lr, seed
        self.net: torch.nn.Module | None = None

    def fit(self, x, y):
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.net = mlp(x.shape[1], self.hidden, 1, 2).to(device=x.device, dtype=x.dtype)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        mu, sd = y.mean(), y.std().clamp(min=1e-8)
        self._scale = (mu, sd)
        for _ in range(self.epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 1024):
                idx = perm[i:i + 1024]
                loss = ((self.net(x[idx]).squeeze(-1) - (y[idx] - mu) / sd) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return self

    def __call__(self, x):
        mu, sd = self._scale
        return self.net(x).squeeze(-1) * sd + mu


class LinearRegressor:
    """Ridge least squares with an unpenalised intercept, closed form: w = (x^T x + ridge I)^-1 x^T (y - ybar),
    prediction ybar + x w (ybar = mean y). With one-hot (h, s, a) features it gives each sampled cell its
    conditional mean (to a relative O(ridge / count)) and every cell the sample never visits ybar: the tabular
    case. Without the intercept an unvisited cell would get 0, which biases soft-bellman's baseline E_{a'~pi}
    fbar(h,s,a') by pi(a'|s) E[f | h,s,a'] for each rare action a' the batch misses, an error the Monte Carlo
    sums (of size ~1/(1-gamma)) and 1/lam then multiply (docs/aparl-mechanism.md, section (d) on the sampled Term 2)."""

    def __init__(self, ridge: float = 1e-8):
        self.ridge = ridge

    def fit(self, x, y):
        self.mean = y.mean()
        A = x.T @ x + self.ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
        self.w = torch.linalg.solve(A, x.T @ (y - self.mean))
        return self

    def __call__(self, x):
        return x @ self.w + self.mean


def _step_features(T: int, dtype, device=None) -> torch.Tensor:
    return torch.eye(T, dtype=dtype, device=device)


def term2_soft_bellman(policy: Policy, reward: torch.nn.Module, batch: PairBatch, *, temperature: float,
                       gamma: float, regressor: Regressor | None = None,
                       features: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                       f: torch.Tensor | None = None, center: bool = False) -> torch.Tensor:
    """Term 2 from the soft Bellman identity (module docstring). ``features(h_onehot, obs, act)`` builds the
    regression inputs for fbar (default: concatenation); ``regressor`` defaults to :class:`MLPRegressor`.

    ``center``: subtract from A_ih = fbar(h, s_ih, a_ih) - E_{a'~pi} fbar(h, s_ih, a') its batch mean at each step
    h. As E[A_ih] = 0 the mean moves by O(1/N), and the term (1/lam) sum_h mean_i(A_ih) E[MC_h] goes: zero on
    average, but the largest error at gamma near 1, where MC_h ~ 1/(1 - gamma) (docs/aparl-mechanism.md section (d))."""
    params = [p for p in reward.parameters()]
    B, S, T = batch.obs.shape[0], len(batch.policy_sides), batch.segment
    if f is None:
        with torch.no_grad():
            f = pair_objective(reward, batch)  # (B,)
    f = f.detach()
    feats = features or (lambda h, o, a: torch.cat([h, o, a], dim=-1))
    dtype = batch.obs.dtype
    H = _step_features(T, dtype, batch.obs.device)[None, None].expand(B, S, T, T)
    obs_s, act_s = batch.on_policy(batch.obs[:, :, :T]), batch.on_policy(batch.act[:, :, :T])
    x = feats(H.reshape(-1, T), obs_s.reshape(-1, obs_s.shape[-1]), act_s.reshape(-1, act_s.shape[-1]))
    y = f[:, None, None].expand(B, S, T).reshape(-1)
    reg = (regressor or MLPRegressor()).fit(x, y)
    with torch.no_grad():
        fbar = reg(x)
        h_flat, o_flat = H.reshape(-1, T), obs_s.reshape(-1, obs_s.shape[-1])
        # ``expected`` may tile the states k times in blocks (k sampled actions each): tile h the same way
        baseline = policy.expected(o_flat, lambda o, a: reg(feats(h_flat.repeat(len(o) // len(h_flat), 1), o, a)))
        adv = (fbar - baseline).reshape(B, S, T)
        if center:
            adv = adv - adv.mean((0, 1), keepdim=True)
    mc = batch.tail_sums(reward, gamma)  # (B, S, T)
    surrogate = (adv * mc).sum((1, 2)).mean() / temperature
    return _flat(torch.autograd.grad(surrogate, params, allow_unused=True), params)


def _score_gradient(policy, batch: PairBatch, f: torch.Tensor, pparams) -> torch.Tensor:
    """g = E[(f - mean f) grad_theta log rho(tau0) + ... tau1] (score function on the segments of the policy
    sides)."""
    T = batch.segment
    obs, act = batch.on_policy(batch.obs[:, :, :T]), batch.on_policy(batch.act[:, :, :T])
    logp = policy.log_prob(obs.reshape(-1, obs.shape[-1]), act.reshape(-1, act.shape[-1])).reshape(obs.shape[:3])
    surrogate = ((f - f.mean()).detach() * logp.sum((1, 2))).mean()
    return _flat(torch.autograd.grad(surrogate, pparams, allow_unused=True), pparams)


def _lower_objective(policy, critic, obs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Sampled lower-level objective L(theta) = mean_i E_{a~pi}[Q(s_i, a) - lam log pi(a|s_i)]."""
    return policy.expected(obs, lambda o, a: critic(o, a) - temperature * policy.log_prob(o, a)).mean()


def hvp_operator(policy: Policy, critic: torch.nn.Module, obs: torch.Tensor, temperature: float,
                 damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (A + delta I) v with A = -hess_theta L (positive semidefinite near the optimum), L the sampled
    lower-level objective on the states ``obs``. It depends on the policy, the critic and the states only, not
    on the reward, so one operator (one sample of actions, one graph) serves every member of a reward ensemble
    (pass it to :func:`term2_implicit` as ``operator``)."""
    pparams = [p for p in policy.parameters()]
    L = _lower_objective(policy, critic, obs, temperature)
    grad = torch.autograd.grad(L, pparams, create_graph=True)
    gflat = torch.cat([g.reshape(-1) for g in grad])

    def apply(v: torch.Tensor) -> torch.Tensor:
        hv = torch.autograd.grad(gflat @ v, pparams, retain_graph=True, allow_unused=True)
        return -_flat(hv, pparams) + damping * v

    return apply


def conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, max_iter: int,
                       tol: float = 1e-10) -> tuple[torch.Tensor, int]:
    """Solve A x = b for symmetric A given as ``apply``; stops at ``max_iter``, at relative residual ``tol``,
    or at the first direction of non-positive curvature (returning the iterate so far)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = r @ r
    b2 = b @ b
    for it in range(1, max_iter + 1):
        Ap = apply(p)
        curvature = p @ Ap
        if curvature <= 0:  # negative curvature (away from the optimum the Hessian need not be definite):
            return (x if it > 1 else b * (rs / b2.clamp(min=1e-300))), it  # stop, as truncated Newton-CG does
        alpha = rs / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        rs_new = r @ r
        if rs_new <= tol**2 * b2:
            return x, it
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x, max_iter


def neumann_step(apply: Callable[[torch.Tensor], torch.Tensor], dim: int, dtype=torch.float32,
                 iterations: int = 20, device=None) -> float:
    """alpha = 1 / (1.1 lambda_max) of the operator, lambda_max by ``iterations`` of power iteration (seeded on the
    CPU, so every device starts from the same vector)."""
    u = torch.randn(dim, dtype=dtype, generator=torch.Generator().manual_seed(0)).to(device)
    for _ in range(iterations):
        u = apply(u)
        u = u / u.norm()
    return 1.0 / (1.1 * float(u @ apply(u)))


def _mixed_product(policy, reward, batch: PairBatch, v: torch.Tensor, gamma: float, pparams) -> torch.Tensor:
    """M^T v = grad_phi mean_i[(v . grad_theta log pi(a_i|s_i)) MC_i(phi)] over the policy sides' segment steps."""
    T = batch.segment
    obs, act = batch.policy_states(), batch.on_policy(batch.act[:, :, :T]).reshape(-1, batch.act.shape[-1])
    # per-sample directional derivative (v . grad_theta log pi(a_i|s_i)) by a forward-mode-free trick:
    # d/deps log pi_{theta + eps v}(a_i|s_i) at eps = 0, via one backward pass of sum_i c_i log pi_i w.r.t. c.
    c = torch.zeros(len(obs), dtype=obs.dtype, device=obs.device, requires_grad=True)
    logp = policy.log_prob(obs, act)
    (gl,) = [torch.autograd.grad((c * logp).sum(), pparams, create_graph=True, allow_unused=True)]
    dirs = torch.autograd.grad(_flat(gl, pparams) @ v, c)[0].detach()
    rparams = list(reward.parameters())
    mc = batch.tail_sums(reward, gamma).reshape(-1)
    return _flat(torch.autograd.grad((dirs * mc).mean(), rparams, allow_unused=True), rparams)


def term2_implicit(policy: Policy, reward: torch.nn.Module, critic: torch.nn.Module, batch: PairBatch, *,
                   temperature: float, gamma: float, solver: str = "cg", damping: float = 1e-4,
                   max_iter: int = 100, neumann_alpha: float | None = None,
                   operator: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   f: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Term 2 = M^T (A + delta I)^-1 g with A = -hess_theta L by CG (``solver='cg'``) or a truncated Neumann
    series (``solver='neumann'``, ``max_iter`` terms, step alpha = 1 / (1.1 lambda_max) from power iteration
    unless ``neumann_alpha`` is given). ``operator``: a prebuilt :func:`hvp_operator` on the batch's segment
    states (its ``damping`` is then the operator's, and this call's ``damping`` is not used); info returns
    ``neumann_alpha`` so that an ensemble can reuse it too."""
    pparams = [p for p in policy.parameters()]
    if f is None:
        with torch.no_grad():
            f = pair_objective(reward, batch)
    g = _score_gradient(policy, batch, f, pparams)
    apply = operator or hvp_operator(policy, critic, batch.policy_states(), temperature, damping)
    info: dict = {}
    if solver == "cg":
        v, iters = conjugate_gradient(apply, g, max_iter)
        info["cg_iterations"] = iters
    elif solver == "neumann":
        alpha = neumann_alpha if neumann_alpha is not None else neumann_step(apply, g.numel(), g.dtype, device=g.device)
        v, term = alpha * g, alpha * g
        for _ in range(max_iter - 1):
            term = term - alpha * apply(term)
            v = v + term
        info["neumann_alpha"] = alpha
    else:
        raise ValueError(f"solver: expected 'cg' or 'neumann', got {solver!r}")
    info["residual"] = float((apply(v) - g).norm() / g.norm().clamp(min=1e-300))
    return _mixed_product(policy, reward, batch, v, gamma, pparams), info


def estimate(name: str, policy: Policy, reward: torch.nn.Module, batch: PairBatch, *, temperature: float,
             gamma: float, critic: torch.nn.Module | None = None,
             objective: Callable[[torch.nn.Module, PairBatch], torch.Tensor] = pair_objective,
             **options) -> Term2Result:
    """Term 1 and Term 2 of the hypergradient of E[f] with estimator ``name`` (one of ESTIMATORS); ``objective``
    gives f per pair (eq. 5's log-likelihood, UPPER_OBJECTIVES); ``depends_on_reward = False`` on it: Term 1 = 0."""
    if name not in ESTIMATORS:
        raise ValueError(f"hypergrad: unknown estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
    t0 = time.perf_counter()
    rparams = list(reward.parameters())
    f = objective(reward, batch)
    if getattr(objective, "depends_on_reward", True):
        term1 = _flat(torch.autograd.grad(f.mean(), rparams, allow_unused=True), rparams)
    else:  # an objective declared free of phi (a designer utility's estimate): Term 1 = 0
        term1 = _flat([None] * len(rparams), rparams)
    info: dict = {}
    if name == "none":
        term2 = torch.zeros_like(term1)
    elif name == "soft-bellman":
        term2 = term2_soft_bellman(policy, reward, batch, temperature=temperature, gamma=gamma, f=f, **options)
    else:
        if critic is None:
            raise ValueError(f"hypergrad: {name} needs the lower level's critic Q(obs, act)")
        term2, info = term2_implicit(policy, reward, critic, batch, temperature=temperature, gamma=gamma,
                                     solver="cg" if name == "ift-cg" else "neumann", f=f.detach(), **options)
    return Term2Result(term2=term2.detach(), term1=term1.detach(), objective=float(f.detach().mean()),
                       seconds=time.perf_counter() - t0, info=info)
