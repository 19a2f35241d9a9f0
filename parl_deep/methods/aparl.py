"""A-PARL on continuous control (``parl train --method a-parl --hypergrad ESTIMATOR``).

A-PARL is PEBBLE's loop with two changes that follow from the bilevel view (docs/theory.md section 5):

1. the upper level is measured on trajectories of the *current* policy rho(.; theta_K): segments are queried
   from the last ``query_window`` transitions (default: ``num_interact``, the data collected since the last
   update), not from the whole replay buffer; the window is logged at every session;
2. the reward update adds a Term 2 estimate (:mod:`parl_deep.preference.hypergrad`) to the Bradley-Terry gradient
   (Term 1), so that phi accounts for how it moves the policy that generates the data it is judged on.

Each feedback session is one iteration of Algorithm 1, run through :func:`parl_core.apar.a_parl` -- the same
function that drives the exact tabular engine:

* phi is the reward ensemble, theta the SAC agent (handles, not arrays);
* ``LowerSolver.improve(phi, theta, K)``: the run loop is the lower-level solver. Between two sessions it ran
  K environment steps and SAC updates on r_phi (the buffer is relabelled with r_phi after each reward update),
  so ``improve`` returns the agent as the loop left it (:class:`RunLoopSolver`);
* ``HypergradientEstimator(phi, theta)``: Term 2 per ensemble member on this session's labelled pairs and
  their continuations, with the chosen estimator (``soft-bellman``, ``ift-cg``, ``neumann``; ``none`` drops
  it, which is PEBBLE's update on the recent window);
* ``update(phi, estimate, t)``: PEBBLE's reward-learning round (Term 1 of all labels so far, its epochs with
  early stop), then the upper ascent step of Algorithm 1 along Term 2: phi_m += ``term2_step`` * Term 2_m
  for each member m. (Adding Term 2 as a fixed linear loss to every Adam step of the round was tried and
  diverged: as the Bradley-Terry gradient vanishes near the fit, the constant Term 2 dominates every step.)
  Stabiliser (not in the paper): each member's Term 2 is scaled down to at most ``term2_clip`` times the norm
  of its Term 1 on the same batch (SAC's policy is not at the optimum the estimators assume, and 1/alpha is
  large when alpha is small); the fraction of clipped members is logged. ``term2_clip = inf`` disables it.

The entropy temperature lam of the soft-Bellman identity is SAC's current alpha, gamma SAC's discount. The
Monte Carlo sums behind psi = dQ/dphi run over the stored continuation of each segment (``continuation``
steps, cut at the episode's end: a truncation bias of order gamma^continuation, logged as ``mc_coverage``).
Logged per session (``aparl.csv``, TensorBoard ``method/...``): |Term 1|, |Term 2|, their cosine, the
estimator's seconds, the window, and estimator diagnostics (CG iterations and residual).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from parl_core.apar import a_parl
from parl_deep.fields import opt
from parl_deep.io import APARL_CSV, append_row
from parl_deep.methods.pebble import PEBBLEConfig, PEBBLEMethod
from parl_deep.preference.hypergrad import (ESTIMATORS, UPPER_OBJECTIVES, MLPRegressor, PairBatch, Term2Result,
                                           estimate, hvp_operator)

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.training import TrainLoop

APARL_FIELDS = ["step", "iteration", "inner_steps", "query_window", "pairs", "term1_norm", "term2_norm", "clipped",
                "cosine",
                "mc_coverage", "temperature", "seconds", "cg_iterations", "residual"]


@dataclass
class APARLConfig(PEBBLEConfig):
    """PEBBLE's options plus the Term 2 estimator's. ``query_window`` None means ``num_interact``."""

    hypergrad: str = opt("soft-bellman", choices=ESTIMATORS, flag=True)
    """Term 2 estimator (none: drop Term 2, i.e. PEBBLE's update on the recent window)"""
    term2_step: float = opt(1e-2, low=0.0, flag=True)
    """step size of the ascent step along Term 2 after each reward round"""
    term2_clip: float = opt(1.0, low=0.0)
    """scale each member's Term 2 down to at most this times its Term 1 norm (inf: no clipping)"""
    continuation: int = opt(200, low=0)
    """steps after a segment, in the same episode, summed for the Monte Carlo psi = dQ/dphi"""
    policy_samples: int = opt(4, low=1)
    """reparameterised actions per state for expectations under the policy"""
    cg_iters: int = opt(20, low=1)
    """conjugate-gradient iterations of ift-cg"""
    neumann_terms: int = opt(20, low=1)
    """terms of the Neumann series of neumann"""
    damping: float = opt(1e-2, low=0.0)
    """damping added to the policy Hessian (ift-cg, neumann)"""
    regressor_hidden: int = opt(64, low=1)
    """hidden width of soft-bellman's MLP regressor"""
    regressor_epochs: int = opt(30, low=1)
    """training epochs of soft-bellman's MLP regressor"""
    upper: str = opt("likelihood", choices=tuple(UPPER_OBJECTIVES), flag=True)
    """per-pair upper objective f whose Term 2 is added: likelihood (eq. 5) or brier, -(P_phi - y)^2, a proper score
    whose exact form is stationary at the true reward (parl verify rlhf_truth); the reward round stays Bradley-Terry"""
    term2_gate: str = opt("off", choices=("off", "split-cosine"), flag=True)
    """split-cosine: estimate Term 2 on the two halves of the pairs and ascend only when their cosine exceeds
    gate_threshold (otherwise the update is exactly PEBBLE's); off: always ascend"""
    gate_threshold: float = opt(0.2, low=-1.0, high=1.0)
    """the split-cosine gate opens above this cosine between the half-batch Term 2 estimates"""
    term2_scale: str = opt("clip", choices=("clip", "trust-region"), flag=True)
    """clip: Term 2 scaled to at most term2_clip times |Term 1|; trust-region: the ascent step scaled so that the
    RMS change of r_phi over the batch's segment steps is at most trust_radius"""
    trust_radius: float = opt(0.05, low=0.0, low_open=True)
    """largest RMS change of r_phi per Term 2 step (term2_scale = trust-region)"""
    psi_discount: float | None = opt(None, low=0.0, high=1.0)
    """discount of the Monte Carlo reward-gradient sums psi = dQ/dphi (null: SAC's discount; shorter is lower
    variance and biased)"""

    @classmethod
    def method_name(cls) -> str:
        return "a-parl"

    def validate(self) -> None:
        super().validate()
        if self.reward_device != "cpu":
            raise ValueError("a-parl: reward_device must be 'cpu' (the ensemble follows the run's device, which the "
                             "Term 2 estimators share with SAC; use --device)")


class SACPolicy(torch.nn.Module):
    """The hypergrad ``Policy`` protocol for SAC's tanh-squashed Gaussian actor."""

    def __init__(self, actor: torch.nn.Module, samples: int = 4):
        super().__init__()
        self.actor, self.samples = actor, int(samples)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.actor.log_prob(obs, act)

    def expected(self, obs: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """E_{a~pi(.|s)}[fn(s, a)] by ``samples`` reparameterised actions per state."""
        reps = obs.repeat(self.samples, 1)
        a, _ = self.actor.sample(reps)
        return fn(reps, a).reshape(self.samples, len(obs)).mean(0)


class SACCritic(torch.nn.Module):
    """Q(s, a) = min over SAC's twin critics (the value SAC's actor ascends)."""

    def __init__(self, critic: torch.nn.Module):
        super().__init__()
        self.critic = critic

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, act, detach_params=True).min(0)[0].squeeze(-1)


class MemberReward(torch.nn.Module):
    """One ensemble member as r_phi(obs, act) -> (N,)."""

    def __init__(self, ensemble, member: int):
        super().__init__()
        self.net = ensemble.members[member]
        self._ensemble, self._member = ensemble, member

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self._ensemble.member_rewards(self._member, torch.cat([obs, act], dim=-1))


class RunLoopSolver:
    """``LowerSolver`` whose K inner steps are the K environment steps and SAC updates the run loop performed
    since the previous session (the loop drives the environment; A-PARL's iteration starts when it is due)."""

    def __init__(self, loop: "TrainLoop", elapsed: int):
        self.loop, self.elapsed = loop, elapsed

    def improve(self, phi, theta, steps: int):
        if steps != self.elapsed:
            raise RuntimeError(f"A-PARL asked for {steps} inner steps, the run loop ran {self.elapsed}")
        return self.loop.agent


class APARLMethod(PEBBLEMethod):
    """A-PARL: PEBBLE's queries and reward ensemble, the recent window, and Term 1 + Term 2 reward updates."""

    name = "a-parl"
    config_cls = APARLConfig
    log_files = PEBBLEMethod.log_files + (APARL_CSV,)

    @classmethod
    def resolve_config(cls, config: dict[str, Any], env: str) -> dict[str, Any]:
        merged = super().resolve_config(config, env)  # PEBBLE's task preset under the user's options
        if merged.get("query_window") is None:
            merged["query_window"] = max(merged["num_interact"], merged["segment"])
        return asdict(cls.config_cls.from_dict(merged))

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        super().__init__(loop, config)
        self.last_stats: dict[str, float] = {}

    def pair_batch(self) -> PairBatch:
        """This session's labelled pairs (PEBBLE's ``session_pairs``), each segment extended by its
        continuation in the same episode, with the mask of the steps that exist."""
        rows0, rows1, y = self.session_pairs
        c, buf = self.pcfg, self.loop.buffer
        length = c.stored_length + c.continuation
        parts = [self.index.continuation_rows(r[:, c.label_slice.start:][:, :1], length) for r in (rows0, rows1)]
        rows = np.stack([p[0] for p in parts], axis=1)  # (B, 2, L)
        mask = np.stack([p[1] for p in parts], axis=1)
        dev = self.loop.agent.device
        obs = torch.from_numpy(buf.column("obs")[rows]).to(dev)
        act = torch.from_numpy(buf.column("act")[rows]).to(dev)
        return PairBatch(obs=obs, act=act, labels=torch.as_tensor(y, dtype=torch.float32, device=dev),
                         segment=c.segment, mask=torch.from_numpy(mask.astype(np.float32)).to(dev))

    def _estimator_options(self, batch: PairBatch, policy, critic, temperature: float) -> dict[str, Any]:
        c = self.pcfg
        options: dict[str, Any] = {"objective": UPPER_OBJECTIVES[c.upper]} if c.upper != "likelihood" else {}
        if c.hypergrad == "soft-bellman":
            options["regressor"] = MLPRegressor(hidden=c.regressor_hidden, epochs=c.regressor_epochs,
                                                seed=int(self.rng.integers(2**31)))
        elif c.hypergrad in ("ift-cg", "neumann"):
            # One Hessian operator (and one Neumann step size) for all members: it does not involve the reward.
            states = batch.obs[:, :, :batch.segment].reshape(-1, batch.obs.shape[-1])
            options.update(max_iter=c.cg_iters if c.hypergrad == "ift-cg" else c.neumann_terms, damping=c.damping,
                           operator=hvp_operator(policy, critic, states, max(temperature, 1e-8), c.damping))
        return options

    def _member_estimates(self, batch: PairBatch, policy, critic, temperature: float,
                          options: dict[str, Any]) -> list[Term2Result]:
        c = self.pcfg
        gamma = self.loop.cfg.sac.discount if c.psi_discount is None else c.psi_discount
        out = []
        for m in range(self.reward_model.n_members):
            res = estimate(c.hypergrad, policy, MemberReward(self.reward_model, m), batch,
                           temperature=max(temperature, 1e-8), gamma=gamma, critic=critic, **options)
            if "neumann_alpha" in res.info:
                options["neumann_alpha"] = res.info["neumann_alpha"]
            out.append(res)
        return out

    def _gated(self, batch: PairBatch, policy, critic, temperature: float, options: dict[str, Any]):
        """The split-cosine gate: Term 2 on each half of the pairs; the estimate is their mean (Term 1 too), the
        statistic the mean over members of the cosine between the halves."""
        half = len(batch.labels) // 2
        halves = [_sub_batch(batch, slice(0, half)), _sub_batch(batch, slice(half, 2 * half))]
        a, b = (self._member_estimates(h, policy, critic, temperature, options) for h in halves)
        merged = [Term2Result(term2=(x.term2 + y.term2) / 2, term1=(x.term1 + y.term1) / 2,
                              objective=(x.objective + y.objective) / 2, seconds=x.seconds + y.seconds, info=y.info)
                  for x, y in zip(a, b)]
        stat = float(np.mean([_cosine(x.term2, y.term2) for x, y in zip(a, b)]))
        return merged, stat

    def estimate_term2(self) -> tuple[list[torch.Tensor], dict[str, float]]:
        """Term 2 for each member on this session's pairs, gated and scaled (empty list: the gate is closed), and
        the statistics of the log."""
        c, agent = self.pcfg, self.loop.agent
        batch = self.pair_batch()
        policy, critic = SACPolicy(agent.actor, c.policy_samples), SACCritic(agent.critic)
        temperature = float(agent.alpha)
        t_shared = time.perf_counter()
        options = self._estimator_options(batch, policy, critic, temperature)
        secs = time.perf_counter() - t_shared  # the shared operator's cost
        gate: dict[str, float] = {}
        if c.term2_gate == "split-cosine" and len(batch.labels) >= 2:
            results, stat = self._gated(batch, policy, critic, temperature, options)
            gate = {"gate_stat": stat, "gate_open": float(stat > c.gate_threshold)}
        else:
            results = self._member_estimates(batch, policy, critic, temperature, options)
            if c.term2_gate == "split-cosine":  # fewer than two pairs: no test possible, no Term 2
                gate = {"gate_stat": float("nan"), "gate_open": 0.0}
        t2s, clipped = [], []
        for res in results:
            t2, bound = res.term2, c.term2_clip * float(res.term1.norm())
            raw = float(t2.norm())
            clipped.append(c.term2_scale == "clip" and raw > bound)
            t2s.append(t2 * (bound / raw) if clipped[-1] else t2)
            secs += res.seconds
        info = results[-1].info
        cos = [_cosine(r.term1, r.term2) for r in results]
        stats = {"pairs": float(len(batch.labels)),
                 "term1_norm": float(np.mean([float(r.term1.norm()) for r in results])),
                 "term2_norm": float(np.mean([float(r.term2.norm()) for r in results])),
                 "clipped": float(np.mean(clipped)),
                 "cosine": float("nan") if np.all(np.isnan(cos)) else float(np.nanmean(cos)),
                 "mc_coverage": float(batch.mask[:, :, c.segment:].mean()) if c.continuation else float("nan"),
                 "temperature": temperature, "seconds": secs,
                 "cg_iterations": float(info.get("cg_iterations", float("nan"))),
                 "residual": float(info.get("residual", float("nan"))), **gate}
        if gate and not gate["gate_open"]:
            return [], stats
        return t2s, stats

    @torch.no_grad()
    def ascend_term2(self, term2: list[torch.Tensor]) -> dict[str, float]:
        """phi_m += term2_step * Term 2_m for every member (the upper step of Algorithm 1 along Term 2); with the
        trust region, each member's step is scaled down until the RMS change of its reward over this session's
        segment steps is at most ``trust_radius`` (first order in the step). Returns the mean scale factor."""
        trust = self.pcfg.term2_scale == "trust-region"
        if trust:
            batch = self.pair_batch()
            obs, act = (x[:, :, :batch.segment].reshape(-1, x.shape[-1]) for x in (batch.obs, batch.act))
        factors = []
        for m, (member, t2) in enumerate(zip(self.reward_model.members, term2)):
            step = self.pcfg.term2_step * t2
            before = MemberReward(self.reward_model, m)(obs, act) if trust else None
            _add_flat(member, step)
            factor = 1.0
            if trust:
                rms = float((MemberReward(self.reward_model, m)(obs, act) - before).pow(2).mean().sqrt())
                if rms > self.pcfg.trust_radius:
                    factor = self.pcfg.trust_radius / rms
                    _add_flat(member, (factor - 1.0) * step)
            factors.append(factor)
        return {"scale_factor": float(np.mean(factors))} if trust else {}

    def update_reward(self) -> dict[str, Any]:
        """One iteration of Algorithm 1 (parl_core.apar.a_parl) at this feedback session."""
        if self.session_pairs is None or len(self.session_pairs[2]) == 0:
            return super().update_reward()
        t = self.sessions
        elapsed = self.loop.step - max(self.counters["last_session_step"], 0)
        stats: dict[str, Any] = {}
        est_stats: dict[str, float] = {}

        def estimator(phi, theta):
            t2, st = self.estimate_term2()
            est_stats.update(st)
            return torch.cat(t2).cpu().numpy() if t2 else np.zeros(0, dtype=np.float32)  # empty: the gate is closed

        def update(phi, est, it):
            stats.update(self.fit_reward())
            est = np.asarray(est)
            if est.size:  # empty: the gate is closed and the update is PEBBLE's
                sizes = [sum(p.numel() for p in mem.parameters()) for mem in phi.members]
                est_stats.update(self.ascend_term2(list(torch.from_numpy(est).split(sizes))))
            return phi

        a_parl(self.reward_model, self.loop.agent, RunLoopSolver(self.loop, elapsed), estimator,
               iterations=t + 1, start=t, inner_steps=lambda _t: elapsed, update=update)
        self.counters["reward_updates"] += 1
        window = min(self.pcfg.query_window, self.loop.buffer.size)
        self.last_stats = {"iteration": float(t), "inner_steps": float(elapsed), "query_window": float(window),
                           **est_stats}
        append_row(self.loop.run_dir / APARL_CSV, {"step": self.loop.step, **self.last_stats}, self.log_fields())
        return stats

    def log_fields(self) -> list[str]:
        """Columns of aparl.csv: today's, plus the gate's and the trust region's only when they are on (so the
        logs of runs with the default options keep their columns)."""
        c = self.pcfg
        extra = (["gate_stat", "gate_open"] if c.term2_gate != "off" else []) + \
            (["scale_factor"] if c.term2_scale == "trust-region" else [])
        return APARL_FIELDS + extra

    def on_step(self, step: int, loop: "TrainLoop") -> dict[str, float]:
        before = self.sessions
        out = super().on_step(step, loop)
        if self.sessions != before and self.last_stats:
            out = {**out, **{f"aparl_{k}": v for k, v in self.last_stats.items() if not math.isnan(v)}}
        return out

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["aparl_last_stats"] = dict(self.last_stats)
        return sd

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.last_stats = dict(sd.get("aparl_last_stats", {}))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else float("nan")


def _sub_batch(batch: PairBatch, rows: slice) -> PairBatch:
    return PairBatch(obs=batch.obs[rows], act=batch.act[rows], labels=batch.labels[rows], segment=batch.segment,
                     mask=None if batch.mask is None else batch.mask[rows])


def _add_flat(module: torch.nn.Module, flat: torch.Tensor) -> None:
    """module's parameters += the flat vector ``flat`` (in ``parameters()`` order)."""
    offset = 0
    for p in module.parameters():
        n = p.numel()
        p.add_(flat[offset:offset + n].reshape(p.shape).to(device=p.device, dtype=p.dtype))
        offset += n


__all__ = ["APARLConfig", "APARLMethod", "SACPolicy", "SACCritic", "MemberReward", "RunLoopSolver"]
