"""A-PARL on continuous control (``parl train --method a-parl --hypergrad ESTIMATOR``).

A-PARL is PEBBLE's loop with two changes that follow from the bilevel view (THEORY.md section 5):

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
from parl_deep.preference.hypergrad import ESTIMATORS, MLPRegressor, PairBatch, estimate, hvp_operator

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.train import TrainLoop

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

    @classmethod
    def method_name(cls) -> str:
        return "a-parl"

    def validate(self) -> None:
        super().validate()
        if self.reward_device != "cpu":
            raise ValueError("a-parl: reward_device must be 'cpu' (the Term 2 estimators share SAC's CPU tensors)")


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
        obs = torch.from_numpy(buf.column("obs")[rows])
        act = torch.from_numpy(buf.column("act")[rows])
        return PairBatch(obs=obs, act=act, labels=torch.as_tensor(y, dtype=torch.float32),
                         segment=c.segment, mask=torch.from_numpy(mask.astype(np.float32)))

    def estimate_term2(self) -> tuple[list[torch.Tensor], dict[str, float]]:
        """Term 2 (and Term 1, for the log) for each member on this session's pairs."""
        c, agent = self.pcfg, self.loop.agent
        batch = self.pair_batch()
        policy, critic = SACPolicy(agent.actor, c.policy_samples), SACCritic(agent.critic)
        temperature = float(agent.alpha)
        options: dict[str, Any] = {}
        t_shared = time.perf_counter()
        if c.hypergrad == "soft-bellman":
            options["regressor"] = MLPRegressor(hidden=c.regressor_hidden, epochs=c.regressor_epochs,
                                                seed=int(self.rng.integers(2**31)))
        elif c.hypergrad in ("ift-cg", "neumann"):
            # One Hessian operator (and one Neumann step size) for all members: it does not involve the reward.
            states = batch.obs[:, :, :batch.segment].reshape(-1, batch.obs.shape[-1])
            options.update(max_iter=c.cg_iters if c.hypergrad == "ift-cg" else c.neumann_terms, damping=c.damping,
                           operator=hvp_operator(policy, critic, states, max(temperature, 1e-8), c.damping))
        t2s, n1, n2, cos, clipped, info = [], [], [], [], [], {}
        secs = time.perf_counter() - t_shared  # the shared operator's cost
        for m in range(self.reward_model.n_members):
            res = estimate(c.hypergrad, policy, MemberReward(self.reward_model, m), batch,
                           temperature=max(temperature, 1e-8), gamma=self.loop.cfg.sac.discount, critic=critic,
                           **options)
            t2, bound = res.term2, c.term2_clip * float(res.term1.norm())
            raw = float(t2.norm())
            clipped.append(raw > bound)
            if raw > bound:
                t2 = t2 * (bound / raw)
            t2s.append(t2)
            n1.append(float(res.term1.norm()))
            n2.append(raw)
            denom = float(res.term1.norm() * res.term2.norm())
            cos.append(float(res.term1 @ res.term2) / denom if denom > 0 else float("nan"))
            secs += res.seconds
            info = res.info
            if "neumann_alpha" in info:
                options["neumann_alpha"] = info["neumann_alpha"]
        mask = batch.mask
        stats = {"pairs": float(len(batch.labels)), "term1_norm": float(np.mean(n1)),
                 "term2_norm": float(np.mean(n2)), "clipped": float(np.mean(clipped)), "cosine": float(np.nanmean(cos)) if not np.all(np.isnan(cos))
                 else float("nan"),
                 "mc_coverage": float(mask[:, :, c.segment:].mean()) if c.continuation else float("nan"),
                 "temperature": temperature, "seconds": secs,
                 "cg_iterations": float(info.get("cg_iterations", float("nan"))),
                 "residual": float(info.get("residual", float("nan")))}
        return t2s, stats

    @torch.no_grad()
    def ascend_term2(self, term2: list[torch.Tensor]) -> None:
        """phi_m += term2_step * Term 2_m for every member (the upper step of Algorithm 1 along Term 2)."""
        for member, t2 in zip(self.reward_model.members, term2):
            offset = 0
            for p in member.parameters():
                n = p.numel()
                p.add_(self.pcfg.term2_step * t2[offset:offset + n].reshape(p.shape).to(p.dtype))
                offset += n

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
            return torch.cat(t2).numpy()

        def update(phi, est, it):
            sizes = [sum(p.numel() for p in mem.parameters()) for mem in phi.members]
            per_member = list(torch.from_numpy(np.asarray(est)).split(sizes))
            stats.update(self.fit_reward())
            self.ascend_term2(per_member)
            return phi

        a_parl(self.reward_model, self.loop.agent, RunLoopSolver(self.loop, elapsed), estimator,
               iterations=t + 1, start=t, inner_steps=lambda _t: elapsed, update=update)
        self.counters["reward_updates"] += 1
        window = min(self.pcfg.query_window, self.loop.buffer.size)
        self.last_stats = {"iteration": float(t), "inner_steps": float(elapsed), "query_window": float(window),
                           **est_stats}
        append_row(self.loop.run_dir / APARL_CSV, {"step": self.loop.step, **self.last_stats}, APARL_FIELDS)
        return stats

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


__all__ = ["APARLConfig", "APARLMethod", "SACPolicy", "SACCritic", "MemberReward", "RunLoopSolver"]
