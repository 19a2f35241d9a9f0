"""PEBBLE (Lee et al., 2021): unsupervised pre-training, preference queries, a reward ensemble, relabelling.

Phases (``seed`` = ``sac.seed_steps``, ``U`` = ``num_unsup_steps``): (1) steps ``1..seed``: random actions, no
updates; (2) until ``seed + U``: SAC on the intrinsic reward ``d_k(s') / std`` (the distance to the k-th nearest
other next observation in the buffer, :func:`parl_deep.nets.knn_distance`, over the running standard deviation of
every distance so far); (3) feedback sessions at ``seed + U`` and then every ``num_interact`` steps while the
budget lasts. A session draws ``reward_batch`` pairs of ``segment``-step segments inside one episode from the last
``query_window`` transitions (uniformly at first, then by ``feed_type`` among ``large_batch`` times as many
candidates), asks the teacher (every query counts against the budget), fits the reward ensemble on all labels so
far (Bradley-Terry, eq. 6; early stop at ``acc_threshold``), relabels the buffer with the ensemble-mean r_hat, and
after the first session resets the critic and runs ``reset_update`` SAC updates. SAC then learns on r_hat only.

Composition, not hooks: the reward round is ``train_round(dataset, mask_fn=self.mask_fn,
extra_loss=chain_losses(*terms))`` over ``self.loss_terms``, and with ``self.unlabelled`` set every session also
stores ``unlabelled_per_query`` unlabelled pairs per query: PEBBLE+SURF (:mod:`parl_deep.methods.pebble_surf`)
sets the three. A-PARL (:mod:`parl_deep.methods.aparl`) reads ``self.session_pairs``, this session's labels.

Logged per session (``feedback.csv``): ``queries`` (budget spent), ``labels`` (kept), ``fresh_acc`` (before the
round, on the new labels), ``train_acc``, ``eval_acc`` (after the round, on ``eval_pairs`` fresh uniform pairs
labelled by the true return; not stored or counted), ``reward_corr`` (r_hat against the true reward over the last
``corr_window`` steps) and the window. Checkpoints hold everything: a resumed run continues exactly. Presets and
their sources: :mod:`parl_deep.preference.presets`.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from parl_deep.config import check_torch_device
from parl_deep.fields import ConfigError
from parl_deep.io import FEEDBACK_CSV, SEED_TAGS, append_row, derived_seed, generator_from_state, generator_state
from parl_deep.methods.base import Method
from parl_deep.methods.pebble_config import PEBBLEConfig
from parl_deep.nets import RunningMeanStd, knn_distance, pearson
from parl_deep.preference.presets import task_preset
from parl_deep.preference.queries import select_queries
from parl_deep.preference.reward_model import (ExtraLoss, MaskFn, PreferenceDataset, RewardEnsemble,
                                               SegmentPairBuffer, chain_losses)
from parl_deep.preference.teachers import SegmentPairs, make_teacher
from parl_deep.replay import NotEnoughData, SegmentIndex, segment_span

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.training import TrainLoop

__all__ = ["PEBBLEConfig", "PEBBLEMethod", "FEEDBACK_FIELDS"]

FEEDBACK_FIELDS = ["step", "session", "queries", "labels", "new_queries", "new_labels", "dataset_size",
                   "unlabelled_size", "query_window", "feed_type", "fresh_acc", "train_acc", "train_loss",
                   "epochs", "eval_acc", "reward_corr", "pseudo_frac", "relabelled", "seconds", "wall_time_s"]
_DEVICE_FIELDS = ("reward_device",)  # config fields that say where a run executes, not what it computes


class PEBBLEMethod(Method):
    """PEBBLE: unsupervised pre-training, preference queries, reward ensemble, relabelling."""

    name = "pebble"
    config_cls = PEBBLEConfig
    log_files = (FEEDBACK_CSV,)

    @classmethod
    def resolve_config(cls, config: dict[str, Any], env: str) -> dict[str, Any]:
        """Task preset filled in under the user's options; every field explicit (saved in config.json)."""
        cls.config_cls.from_dict(dict(config))  # validates keys and values early
        preset = task_preset(env, cls.name, config.get("max_feedback"))
        merged = {**asdict(cls.config_cls()), **preset, **config}
        return asdict(cls.config_cls.from_dict(merged))

    @classmethod
    def milestones(cls, cfg) -> list[tuple[int, str]]:
        c = cls.config_cls.from_dict(cls.resolve_config(cfg.method_config, cfg.env))
        first = cfg.sac.seed_steps + c.num_unsup_steps
        return super().milestones(cfg) + [(first, f"the first feedback session (sac.seed_steps + num_unsup_steps "
                                                  f"= {first})")]

    @classmethod
    def check_run(cls, cfg) -> None:
        """A query window must hold a whole segment of one environment (:func:`~parl_deep.replay.segment_span`)."""
        c = cls.config_cls.from_dict(cls.resolve_config(cfg.method_config, cfg.env))
        span = segment_span(c.stored_length, cfg.num_envs)
        if c.query_window is not None and c.query_window < span:
            raise ConfigError(f"{cls.name}: query_window = {c.query_window} holds no {c.stored_length}-step segment "
                              f"of one of num_envs = {cfg.num_envs} environments (it spans {span} steps)")

    @classmethod
    def check_runtime(cls, config: dict[str, Any]) -> None:
        """``reward_device`` must be a device torch sees (checked in the process that trains, never in a bench
        parent: touching CUDA before the workers fork would break them)."""
        check_torch_device(str(config.get("reward_device", "cpu")), f"{cls.name}: reward_device")

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        super().__init__(loop, config)
        self.pcfg = self.config_cls.from_dict(self.resolve_config(config, loop.cfg.env))
        c, seed, buf = self.pcfg, loop.cfg.seed, loop.buffer
        self.check_runtime(asdict(c))
        self.reward_model = RewardEnsemble(
            buf.obs_dim, buf.act_dim, n_members=c.ensemble_size, hidden=c.reward_hidden, layers=c.reward_layers,
            lr=c.reward_lr, batch_size=c.reward_minibatch, activation=c.reward_activation,
            seed=derived_seed(seed, SEED_TAGS["reward_model"]),
            device=c.reward_device if c.reward_device != "cpu" else loop.cfg.device)
        self.dataset = PreferenceDataset()
        self.teacher = make_teacher(c.teacher, seed=derived_seed(seed, SEED_TAGS["teacher"]))
        self.rng = np.random.default_rng(derived_seed(seed, SEED_TAGS["method"]))
        self.ent_stats = RunningMeanStd()
        self.index = SegmentIndex(buf.capacity, stride=loop.cfg.num_envs)
        self.counters = {"queries": 0, "labels": 0, "sessions": 0, "last_session_step": -1, "reward_updates": 0,
                         "relabels": 0}
        # composition points (see the module docstring)
        self.loss_terms: list[Callable[[], ExtraLoss | None]] = []
        self.mask_fn: MaskFn | None = None
        self.unlabelled: SegmentPairBuffer | None = None
        self.unlabelled_per_query = 0
        self.session_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    sessions = property(lambda self: self.counters["sessions"], doc="feedback sessions so far")

    # ------------------------------------------------------------------------------------------ hooks
    def reward(self, obs, act, next_obs, env_reward: float) -> float:
        loop = self.loop
        self.index.record(loop.buffer.ptr, loop.live_episode, loop.step)
        # ensemble-mean r_hat of this one transition (RewardEnsemble.r_hat without its batch plumbing)
        x = torch.from_numpy(np.concatenate([np.asarray(obs, np.float32).ravel(), np.asarray(act, np.float32).ravel()]))
        with torch.inference_mode():
            x = x.to(self.reward_model.device).unsqueeze(0)
            r = [float(self.reward_model.member_rewards(m, x)[0]) for m in range(self.reward_model.n_members)]
        return float(np.mean(np.asarray(r, dtype=np.float32)))

    def on_episode_end(self, episode: dict[str, Any], loop: "TrainLoop") -> None:
        self.teacher.observe_episode(episode["env_return"], episode["length"])

    def batch_reward(self, batch, loop: "TrainLoop"):
        """Intrinsic reward until the first feedback session, then None (= the stored learned reward)."""
        if self.sessions > 0:
            return None
        next_obs = batch[3]
        ref = torch.from_numpy(loop.buffer.column("next_obs")).to(next_obs.device)
        if ref.shape[0] < 2:
            return torch.zeros(next_obs.shape[0], 1, device=next_obs.device)
        # fewer than k + 1 stored states only happens with tiny seed phases: use the farthest other state
        d = knn_distance(next_obs, ref, min(self.pcfg.knn_k, ref.shape[0] - 1)).double()
        self.ent_stats.update(d.cpu().numpy())
        std = self.ent_stats.std
        r = d / std if std > 0 else torch.zeros_like(d)
        return r.to(torch.float32).unsqueeze(1)

    def on_step(self, step: int, loop: "TrainLoop") -> dict[str, float]:
        c = self.pcfg
        due = (step >= loop.cfg.sac.seed_steps + c.num_unsup_steps if self.sessions == 0
               else step - self.counters["last_session_step"] >= c.num_interact)
        if due and self.counters["queries"] < c.max_feedback:
            return self.feedback_session(step, loop)
        if self.sessions == 0 and step % 1000 == 0 and self.ent_stats.count:
            return {"intrinsic_std": self.ent_stats.std, "intrinsic_mean": self.ent_stats.mean}
        return {}

    # ------------------------------------------------------------------------------------- segments
    def sample_segment_rows(self, n: int, length: int, window: int | None = None) -> np.ndarray:
        """``(n, length)`` buffer rows of ``n`` random episode-internal windows (uniform over valid starts)."""
        return self.index.sample_rows(self.rng, n, length, self.loop.buffer.size, self.loop.step, window)

    def segment_pairs(self, rows0: np.ndarray, rows1: np.ndarray) -> SegmentPairs:
        """What the teacher is shown of the pairs of buffer rows ``rows0``/``rows1`` (n, T)."""
        buf = self.loop.buffer
        return SegmentPairs(obs0=buf.column("obs")[rows0], obs1=buf.column("obs")[rows1],
                            act0=buf.column("act")[rows0], act1=buf.column("act")[rows1],
                            reward0=buf.true_rewards(rows0), reward1=buf.true_rewards(rows1))

    def sample_pairs(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Buffer rows ``(n, stored_length)`` of ``n`` uniform segment pairs from the query window."""
        c = self.pcfg
        r0 = self.sample_segment_rows(n, c.stored_length, c.query_window)
        r1 = self.sample_segment_rows(n, c.stored_length, c.query_window)
        return r0, r1

    def select_pairs(self, n: int, feed_type: str) -> tuple[np.ndarray, np.ndarray]:
        """Buffer rows ``(n, stored_length)`` of the two segments of the ``n`` pairs to query."""
        c = self.pcfg
        if feed_type == "uniform":
            return self.sample_pairs(n)
        r0, r1 = self.sample_pairs(n * c.large_batch)
        sl = c.label_slice
        idx = select_queries(feed_type, n, self.loop.buffer.features(r0[:, sl]), self.loop.buffer.features(r1[:, sl]),
                             ensemble=self.reward_model, rng=self.rng, labelled=self._labelled_for_kcenter())
        return r0[idx], r1[idx]

    def _labelled_for_kcenter(self) -> PreferenceDataset | None:
        if len(self.dataset) == 0:
            return None
        sl, view = self.pcfg.label_slice, PreferenceDataset()
        view.add(self.dataset.seg0[:, sl], self.dataset.seg1[:, sl], self.dataset.labels)
        return view

    # ------------------------------------------------------------------------------------- feedback
    def fit_reward(self) -> dict[str, Any]:
        """One round of reward learning on ``self.dataset`` (Bradley-Terry plus the composed loss terms)."""
        c = self.pcfg
        extra = chain_losses(*(term() for term in self.loss_terms))
        return self.reward_model.train_round(self.dataset, max_epochs=c.reward_update, acc_threshold=c.acc_threshold,
                                             mask_fn=self.mask_fn, extra_loss=extra)

    def update_reward(self) -> dict[str, Any]:
        """Fit the reward model on all labels so far (A-PARL replaces this with one iteration of Algorithm 1)."""
        stats = self.fit_reward()
        self.counters["reward_updates"] += 1
        return stats

    def relabel(self) -> int:
        """Replace the buffer's learned-reward column by the current ``r_hat`` (batched)."""
        self.loop.buffer.relabel(lambda o, a, _n: self.reward_model.r_hat(o, a))
        self.counters["relabels"] += 1
        return len(self.loop.buffer)

    def ask_teacher(self, r0: np.ndarray, r1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The teacher's labels of the pairs of buffer rows ``(r0, r1)`` (on ``label_slice``) and the mask of those
        it kept: every pair counts as a query against ``max_feedback``, every kept one as a label."""
        sl = self.pcfg.label_slice
        y, keep = self.teacher.label_pairs(self.segment_pairs(r0[:, sl], r1[:, sl]))
        self.counters["queries"] += len(r0)
        self.counters["labels"] += int(keep.sum())
        return y, keep

    def _label_session(self, r0: np.ndarray, r1: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Teacher labels of the selected pairs, stored in the dataset; returns labels, kept mask, fresh_acc."""
        sl = self.pcfg.label_slice
        y, keep = self.ask_teacher(r0, r1)
        s0, s1 = self.loop.buffer.features(r0), self.loop.buffer.features(r1)
        fresh_acc = float("nan")
        if self.counters["reward_updates"] > 0 and keep.any():
            fresh_acc = self.reward_model.accuracy(s0[keep][:, sl], s1[keep][:, sl], y[keep])
        if keep.any():
            self.dataset.add(s0[keep], s1[keep], y[keep])
        self.session_pairs = (r0[keep], r1[keep], y[keep])
        return y, keep, fresh_acc

    def feedback_session(self, step: int, loop: "TrainLoop") -> dict[str, float]:
        c, k = self.pcfg, self.counters
        t0 = time.time()
        first = self.sessions == 0
        feed_type = c.first_feed_type if first else c.feed_type
        n = min(c.reward_batch, c.max_feedback - k["queries"])
        try:
            r0, r1 = self.select_pairs(n, feed_type)
        except NotEnoughData:
            return {}  # too little data in the window: try again next step
        y, keep, fresh_acc = self._label_session(r0, r1)
        if self.unlabelled is not None:
            u0, u1 = self.sample_pairs(self.unlabelled_per_query * n)
            self.unlabelled.add(self.loop.buffer.features(u0), self.loop.buffer.features(u1))
        stats: dict[str, Any] = {}
        relabelled = 0
        if len(self.dataset) > 0:
            stats = self.update_reward()
            relabelled = self.relabel()
        if first and c.reset_critic:
            loop.agent.reset_critic()
            for _ in range(c.reset_update):
                loop.agent.update(*loop.buffer.sample(loop.cfg.sac.batch_size, loop.rng))
        k["sessions"] += 1
        k["last_session_step"] = step
        window = loop.buffer.size if c.query_window is None else min(c.query_window, loop.buffer.size)
        row = {
            "step": step, "session": k["sessions"], "queries": k["queries"], "labels": k["labels"],
            "new_queries": n, "new_labels": int(keep.sum()), "dataset_size": len(self.dataset),
            "unlabelled_size": 0 if self.unlabelled is None else len(self.unlabelled), "query_window": window,
            "feed_type": feed_type, "fresh_acc": fresh_acc,
            "train_acc": stats.get("accuracy", float("nan")), "train_loss": stats.get("loss", float("nan")),
            "epochs": stats.get("epochs", 0), "eval_acc": self.eval_accuracy(),
            "reward_corr": self.reward_correlation(), "pseudo_frac": stats.get("pseudo_frac", ""),
            "relabelled": relabelled, "seconds": time.time() - t0, "wall_time_s": loop.wall_time(),
        }
        append_row(loop.run_dir / FEEDBACK_CSV, row, FEEDBACK_FIELDS)
        return {key: float(v) for key, v in row.items()
                if key not in ("step", "feed_type", "wall_time_s") and v != "" and v is not None}

    # ------------------------------------------------------------------------------------ diagnostics
    def eval_accuracy(self) -> float:
        """Accuracy on ``eval_pairs`` uniform pairs labelled by the true-return comparison (not stored)."""
        c = self.pcfg
        if c.eval_pairs == 0 or self.counters["reward_updates"] == 0:
            return float("nan")
        try:
            r0, r1 = self.sample_pairs(c.eval_pairs)
        except NotEnoughData:
            return float("nan")
        sl = c.label_slice
        g0 = self.loop.buffer.true_rewards(r0[:, sl]).astype(np.float64).sum(1)
        g1 = self.loop.buffer.true_rewards(r1[:, sl]).astype(np.float64).sum(1)
        strict = g0 != g1
        if not strict.any():
            return float("nan")
        y = (g0 > g1).astype(np.float32)[strict]
        return self.reward_model.accuracy(self.loop.buffer.features(r0[:, sl])[strict], self.loop.buffer.features(r1[:, sl])[strict], y)

    def reward_correlation(self) -> float:
        """Pearson correlation of the stored learned reward with the true reward, last ``corr_window`` steps."""
        buf = self.loop.buffer
        recent = self.index.recent(buf.size, self.loop.step, self.pcfg.corr_window)
        return pearson(buf.column("reward")[recent, 0], buf.column("env_reward")[recent, 0])

    # ------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        sd = {"config": asdict(self.pcfg), "reward_model": self.reward_model.state_dict(),
              "dataset": self.dataset.state_dict(), "teacher": self.teacher.state_dict(),
              "rng": generator_state(self.rng), "ent_stats": self.ent_stats.state_dict(),
              **self.index.state_dict(self.loop.buffer.size), "counters": dict(self.counters)}
        if self.unlabelled is not None:
            sd["unlabelled"] = self.unlabelled.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        # where the reward model runs is not part of what the run computes; an option added after the checkpoint
        # was written (absent from it) must still have its default, which is what the run computed with
        defaults = asdict(self.config_cls())
        saved = {k: v for k, v in sd["config"].items() if k not in _DEVICE_FIELDS}
        now = {k: v for k, v in asdict(self.pcfg).items()
               if k not in _DEVICE_FIELDS and (k in saved or v != defaults[k])}
        if saved != now:
            raise ValueError(f"{self.name} config mismatch: checkpoint {saved} vs {now}")
        self.reward_model.load_state_dict(sd["reward_model"])
        self.dataset = PreferenceDataset()
        self.dataset.load_state_dict(sd["dataset"])
        self.teacher.load_state_dict(sd["teacher"])
        self.rng = generator_from_state(sd["rng"])
        self.ent_stats.load_state_dict(sd["ent_stats"])
        self.index.load_state_dict(sd)
        self.counters.update({k: int(v) for k, v in sd["counters"].items()})
        if self.unlabelled is not None:
            self.unlabelled = SegmentPairBuffer(capacity=self.unlabelled.capacity)
            self.unlabelled.load_state_dict(sd["unlabelled"])
