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

Upper objectives (``upper``): eq. 5's likelihood (default), the Brier score, the win rate against a reference
(eqs. 3-4, :mod:`parl_deep.preference.win_rate`), or a weighted sum such as ``likelihood+0.5*win-rate`` (eq. 8
is linear in the utility, so both terms are the same weighted sums). With win-rate, each session, after
PEBBLE's ``reward_batch`` queries, asks the teacher ``win_rate_pairs`` more (a segment of the recent window
against a reference segment, ``win_rate_reference``), counted against ``max_feedback``; their labels y are the
one-sample estimates of U(tau) = P(tau beats tau_ref) whose Term 2 is estimated on segment 0 alone (the
reference segment's probability is not a function of phi), and with ``win_rate_fit`` they also join the
dataset of the reward round (they are genuine labels). The win rate's Term 1 is zero, so with win-rate alone
the clip's scale (and the logged ``term1_norm`` and ``cosine``) is the likelihood's Term 1 on the session's
labelled pairs. ``aparl.csv`` then also logs ``reference_labels`` (queries spent on reference pairs; with the
session's ``new_queries`` of feedback.csv they make up its ``queries``) and ``win_rate`` (mean y).

The entropy temperature lam of the soft-Bellman identity is SAC's current alpha, gamma SAC's discount. The
Monte Carlo sums behind psi = dQ/dphi run over the stored continuation of each segment (``continuation``
steps, cut at the episode's end: a truncation bias of order gamma^continuation, logged as ``mc_coverage``).
Logged per session (``aparl.csv``, TensorBoard ``method/...``): |Term 1|, |Term 2|, their cosine, the
estimator's seconds, the window, and estimator diagnostics (CG iterations and residual).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from parl_core.apar import a_parl
from parl_deep.fields import ConfigError
from parl_deep.io import APARL_CSV, SEED_TAGS, append_row, derived_seed, generator_from_state, generator_state
from parl_deep.methods.aparl_adapters import (MemberReward, RunLoopSolver, SACCritic, SACPolicy, add_flat,
                                              cosine, isolated_torch_rng, sub_batch)
from parl_deep.methods.aparl_config import APARLConfig
from parl_deep.methods.pebble import PEBBLEMethod
from parl_deep.preference.gate import fold_z_statistic, fold_z_threshold, gate_parts, parts_needed
from parl_deep.preference.hypergrad import (MLPRegressor, PairBatch, Term2Result, estimate, hvp_operator,
                                           pair_objective)
from parl_deep.preference.win_rate import REFERENCE_TERMS, UPPER_TERMS, reference_problems, sample_reference_rows
from parl_deep.replay import NotEnoughData

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.training import TrainLoop

APARL_FIELDS = ["step", "iteration", "inner_steps", "query_window", "pairs", "term1_norm", "term2_norm", "clipped",
                "cosine",
                "mc_coverage", "temperature", "seconds", "cg_iterations", "residual"]


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

    @classmethod
    def check_run(cls, cfg) -> None:
        """PEBBLE's checks, and a refusal (ConfigError) of a win-rate reference that this run cannot have or of a
        gate whose parts no session can fill (:meth:`APARLConfig.gate_part_problems`)."""
        super().check_run(cfg)
        c = cls.config_cls.from_dict(cls.resolve_config(cfg.method_config, cfg.env))
        cls.check_reference(cfg, c)
        if problems := c.gate_part_problems():
            raise ConfigError(f"{cls.name}: " + "; ".join(problems))

    @classmethod
    def check_reference(cls, cfg, c: APARLConfig) -> None:
        """With win-rate: ConfigError naming what the reference lacks (:func:`win_rate.reference_problems`)."""
        if not c.wants_reference:
            return
        problems = reference_problems(
            c.win_rate_reference, segment=c.stored_length, stride=cfg.num_envs,
            seed_steps=cfg.sac.seed_steps, steps=cfg.steps, replay_capacity=cfg.replay_capacity,
            query_window=c.query_window, first_session=cfg.sac.seed_steps + c.num_unsup_steps, interval=c.num_interact)
        if problems:
            raise ConfigError(f"{cls.name}: " + "; ".join(problems))

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        super().__init__(loop, config)
        self.check_reference(loop.cfg, self.pcfg)
        self.last_stats: dict[str, float] = {}
        self.reference_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # this session's win-rate pairs
        # estimator_rng = own: the estimator's draws (regressor seeds, torch's generator inside estimate_term2)
        self.estimator_draws = np.random.default_rng(derived_seed(loop.cfg.seed, SEED_TAGS["term2_estimator"]))

    def pair_batch(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                   policy_sides: tuple[int, ...] = (0, 1)) -> PairBatch:
        """This session's labelled pairs (``pairs``, default PEBBLE's ``session_pairs``), each segment extended by
        its continuation in the same episode, with the mask of the steps that exist."""
        rows0, rows1, y = self.session_pairs if pairs is None else pairs
        c, buf = self.pcfg, self.loop.buffer
        length = c.stored_length + c.continuation
        parts = [self.index.continuation_rows(r[:, c.label_slice.start:][:, :1], length) for r in (rows0, rows1)]
        rows = np.stack([p[0] for p in parts], axis=1)  # (B, 2, L)
        mask = np.stack([p[1] for p in parts], axis=1)
        dev = self.loop.agent.device
        obs = torch.from_numpy(buf.column("obs")[rows]).to(dev)
        act = torch.from_numpy(buf.column("act")[rows]).to(dev)
        return PairBatch(obs=obs, act=act, labels=torch.as_tensor(y, dtype=torch.float32, device=dev),
                         segment=c.segment, mask=torch.from_numpy(mask.astype(np.float32)).to(dev),
                         policy_sides=policy_sides)

    def ask_reference_pairs(self) -> dict[str, float]:
        """This session's win-rate pairs (a segment of the last ``query_window`` steps, a reference segment; see
        :mod:`parl_deep.preference.win_rate`), labelled by the teacher after PEBBLE's queries: ``win_rate_pairs``
        of them, or what is left of ``max_feedback``, all counted against it; with ``win_rate_fit`` the kept ones
        join the dataset (``self.reference_pairs``; None, and nothing spent, when the budget is used up or the
        reference or the window has no segment yet). Returns the log's two columns."""
        c, k, buf = self.pcfg, self.counters, self.loop.buffer
        n = min(c.win_rate_pairs or c.reward_batch, c.max_feedback - k["queries"])
        self.reference_pairs, rows = None, None
        if n > 0:
            try:
                rows = sample_reference_rows(self.index, self.rng, n, c.stored_length, buf.size, self.loop.step,
                                             window=c.query_window, reference=c.win_rate_reference,
                                             seed_steps=self.loop.cfg.sac.seed_steps)
            except NotEnoughData:
                pass
        if rows is None:
            return {"reference_labels": 0.0, "win_rate": float("nan")}
        r0, r1 = rows
        y, keep = self.ask_teacher(r0, r1)
        if c.win_rate_fit and keep.any():
            self.dataset.add(buf.features(r0[keep]), buf.features(r1[keep]), y[keep])
        self.reference_pairs = (r0[keep], r1[keep], y[keep])
        return {"reference_labels": float(n), "win_rate": float(np.mean(y[keep])) if keep.any() else float("nan")}

    def upper_components(self) -> list[tuple[float, Any, PairBatch]]:
        """``(weight, f, batch)`` per term of ``upper``: likelihood and brier on this session's labelled pairs,
        win-rate on its reference pairs with segment 0 (the current policy's) alone (none without them)."""
        out, batch = [], None
        for name, w in self.pcfg.upper_terms:
            if name in REFERENCE_TERMS:
                if self.reference_pairs is not None and len(self.reference_pairs[2]):
                    out.append((w, UPPER_TERMS[name], self.pair_batch(self.reference_pairs, policy_sides=(0,))))
                continue
            batch = self.pair_batch() if batch is None else batch
            out.append((w, UPPER_TERMS[name], batch))
        return out

    def _estimator_options(self, batch: PairBatch, policy, critic, temperature: float,
                           objective=pair_objective) -> dict[str, Any]:
        c = self.pcfg
        options: dict[str, Any] = {"objective": objective} if objective is not pair_objective else {}
        if c.hypergrad == "soft-bellman":
            options["regressor"] = MLPRegressor(hidden=c.regressor_hidden, epochs=c.regressor_epochs,
                                                seed=int(self._draws.integers(2**31)))
            if c.term2_center:
                options["center"] = True
        elif c.hypergrad in ("ift-cg", "neumann"):
            # One Hessian operator (and one Neumann step size) for all members: it does not involve the reward.
            options.update(max_iter=c.cg_iters if c.hypergrad == "ift-cg" else c.neumann_terms, damping=c.damping,
                           operator=hvp_operator(policy, critic, batch.policy_states(), max(temperature, 1e-8),
                                                 c.damping))
        return options

    def _member_estimates(self, batch: PairBatch, policy, critic, temperature: float,
                          options: dict[str, Any]) -> list[Term2Result]:
        out = []
        for m in range(self.reward_model.n_members):
            res = estimate(self.pcfg.hypergrad, policy, MemberReward(self.reward_model, m), batch,
                           temperature=max(temperature, 1e-8), gamma=self._gamma, critic=critic, **options)
            if "neumann_alpha" in res.info:
                options["neumann_alpha"] = res.info["neumann_alpha"]
            out.append(res)
        return out

    _draws = property(lambda self: self.estimator_draws if self.pcfg.estimator_rng == "own" else self.rng,
                      doc="the generator of the estimator's seeds (estimator_rng)")
    _gamma = property(lambda self: self.loop.cfg.sac.discount if self.pcfg.psi_discount is None
                      else self.pcfg.psi_discount, doc="discount of the Monte Carlo sums psi = dQ/dphi")

    def _weighted(self, comps, policy, critic, temperature: float, options: list[dict]) -> list[Term2Result]:
        """Per member, sum_k w_k (Term 1, Term 2) over the components (eq. 8 is linear in the utility); one
        component of weight 1 is returned as it is."""
        per = [self._member_estimates(b, policy, critic, temperature, o) for (_, _, b), o in zip(comps, options)]
        if len(comps) == 1 and comps[0][0] == 1.0:
            return per[0]
        ws = [w for w, _, _ in comps]

        def wsum(values):
            return sum(w * v for w, v in zip(ws, values))

        return [Term2Result(term2=wsum(r.term2 for r in rs), term1=wsum(r.term1 for r in rs),
                            objective=wsum(r.objective for r in rs), seconds=sum(r.seconds for r in rs),
                            info=rs[-1].info) for rs in zip(*per)]

    def _gated(self, comps, policy, critic, temperature: float, options: list[dict]):
        """Term 2 on disjoint parts of every component's pairs (the reference pairs too): the estimate is the parts'
        mean (Term 1 too). split-cosine: two halves, the statistic the mean over members of their cosine; fold-z:
        ``gate_folds`` folds, the statistic fold_z_statistic of the members' concatenated estimates."""
        c = self.pcfg
        split = [gate_parts(c.term2_gate, len(b.labels), c.gate_folds) for _, _, b in comps]  # per component
        folds = [self._weighted([(w, f, sub_batch(b, parts[k])) for (w, f, b), parts in zip(comps, split)], policy,
                                critic, temperature, options) for k in range(len(split[0]))]
        merged = [Term2Result(term2=sum(r.term2 for r in rs) / len(rs), term1=sum(r.term1 for r in rs) / len(rs),
                              objective=sum(r.objective for r in rs) / len(rs),
                              seconds=sum(r.seconds for r in rs), info=rs[-1].info) for rs in zip(*folds)]
        if c.term2_gate == "split-cosine":
            return merged, float(np.mean([cosine(x.term2, y.term2) for x, y in zip(*folds)]))
        return merged, fold_z_statistic([torch.cat([r.term2.reshape(-1) for r in rs]) for rs in folds])

    def _likelihood_scale(self, results: list[Term2Result], policy, critic) -> list[Term2Result]:
        """``results`` with Term 1 := the likelihood's Term 1 on this session's labelled pairs: the clip's scale
        when no term of ``upper`` depends on phi directly (win-rate alone)."""
        batch = self.pair_batch()
        return [dataclasses.replace(r, term1=estimate("none", policy, MemberReward(self.reward_model, m), batch,
                                                      temperature=1.0, gamma=self._gamma).term1)
                for m, r in enumerate(results)]

    def estimate_term2(self) -> tuple[list[torch.Tensor], dict[str, float]]:
        """Term 2 for each member on this session's pairs, gated and scaled (empty list: the gate is closed, or
        no component has pairs), and the statistics of the log; with ``estimator_rng = own`` torch's generator is
        the estimator's own in here (:func:`isolated_torch_rng`)."""
        if self.pcfg.estimator_rng == "shared":
            return self._estimate_term2()
        with isolated_torch_rng(self.estimator_draws, self.loop.agent.device):
            return self._estimate_term2()

    def _estimate_term2(self) -> tuple[list[torch.Tensor], dict[str, float]]:
        """:meth:`estimate_term2` on whatever streams are current: the components' batches, the gate, the clip."""
        c, agent = self.pcfg, self.loop.agent
        comps = self.upper_components()
        policy, critic = SACPolicy(agent.actor, c.policy_samples), SACCritic(agent.critic)
        temperature = float(agent.alpha.detach())
        t_shared = time.perf_counter()
        options = [self._estimator_options(b, policy, critic, temperature, f) for _, f, b in comps]
        secs = time.perf_counter() - t_shared  # the shared operators' cost
        gate: dict[str, float] = {}
        need = parts_needed(c.term2_gate, c.gate_folds)
        if need and comps and all(len(b.labels) >= need for _, _, b in comps):
            results, stat = self._gated(comps, policy, critic, temperature, options)
            threshold = c.gate_threshold if c.term2_gate == "split-cosine" else fold_z_threshold(c.gate_alpha, need)
            gate = {"gate_stat": stat, "gate_open": float(stat > threshold)}
        else:
            results = self._weighted(comps, policy, critic, temperature, options) if comps else []
            if need:  # fewer pairs than the test's parts: no test possible, no Term 2
                gate = {"gate_stat": float("nan"), "gate_open": 0.0}
        if results and all(name in REFERENCE_TERMS for name, _ in c.upper_terms):
            results = self._likelihood_scale(results, policy, critic)
        t2s, clipped = [], []
        for res in results:
            t2, bound = res.term2, c.term2_clip * float(res.term1.norm())
            raw = float(t2.norm())
            clipped.append(c.term2_scale == "clip" and raw > bound)
            t2s.append(t2 * (bound / raw) if clipped[-1] else t2)
            secs += res.seconds
        info = results[-1].info if results else {}
        cos = [cosine(r.term1, r.term2) for r in results]
        stats = {"pairs": float(len(self.session_pairs[2])),
                 "term1_norm": _mean([float(r.term1.norm()) for r in results]),
                 "term2_norm": _mean([float(r.term2.norm()) for r in results]),
                 "clipped": _mean(clipped),
                 "cosine": float("nan") if np.all(np.isnan(cos)) else float(np.nanmean(cos)),
                 "mc_coverage": _coverage(comps, c.segment) if c.continuation else float("nan"),
                 "temperature": temperature, "seconds": secs,
                 "cg_iterations": float(info.get("cg_iterations", float("nan"))),
                 "residual": float(info.get("residual", float("nan"))), **gate}
        if not results or (gate and not gate["gate_open"]):
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
            add_flat(member, step)
            factor = 1.0
            if trust:
                rms = float((MemberReward(self.reward_model, m)(obs, act) - before).pow(2).mean().sqrt())
                if rms > self.pcfg.trust_radius:
                    factor = self.pcfg.trust_radius / rms
                    add_flat(member, (factor - 1.0) * step)
            factors.append(factor)
        return {"scale_factor": float(np.mean(factors))} if trust else {}

    def update_reward(self) -> dict[str, Any]:
        """One iteration of Algorithm 1 (parl_core.apar.a_parl) at this feedback session."""
        if self.session_pairs is None or len(self.session_pairs[2]) == 0:
            return super().update_reward()
        reference = self.ask_reference_pairs() if self.pcfg.wants_reference else {}
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
                           **est_stats, **reference}
        append_row(self.loop.run_dir / APARL_CSV, {"step": self.loop.step, **self.last_stats}, self.log_fields())
        return stats

    def log_fields(self) -> list[str]:
        """Columns of aparl.csv: today's, plus the gate's, the trust region's and the win rate's only when they are
        on (so the logs of runs with the default options keep their columns)."""
        c = self.pcfg
        extra = (["gate_stat", "gate_open"] if c.term2_gate != "off" else []) + \
            (["scale_factor"] if c.term2_scale == "trust-region" else []) + \
            (["reference_labels", "win_rate"] if c.wants_reference else [])
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
        sd["estimator_draws"] = generator_state(self.estimator_draws)
        return sd

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.last_stats = dict(sd.get("aparl_last_stats", {}))
        if "estimator_draws" in sd:  # absent from checkpoints written before estimator_rng (which never used it)
            self.estimator_draws = generator_from_state(sd["estimator_draws"])


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def _coverage(comps, segment: int) -> float:
    """Fraction of the continuation steps that exist, over the policy sides of the components' batches."""
    masks = [b.on_policy(b.mask)[:, :, segment:] for _, _, b in comps]
    if len(masks) == 1:
        return float(masks[0].mean())
    return float(torch.cat([m.reshape(-1) for m in masks]).mean()) if masks else float("nan")


__all__ = ["APARLConfig", "APARLMethod", "SACPolicy", "SACCritic", "MemberReward", "RunLoopSolver"]
