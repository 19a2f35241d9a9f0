"""PEBBLE (Lee et al., 2021) and PEBBLE+SURF (Park et al., 2022) as run-loop methods.

``parl train --method pebble`` / ``--method pebble-surf`` use the same run loop, evaluation, logging and
checkpoint/resume machinery as oracle SAC (:mod:`parl_deep.train`); this module plugs in through the
method hooks of :mod:`parl_deep.methods`.

Phases of a run (``seed`` = ``sac.seed_steps``, ``U`` = ``num_unsup_steps``)
------------------------------------------------------------------------------
1. steps ``1..seed``: uniformly random actions, no updates (PEBBLE's ``num_seed_steps``; here it is the SAC
   config's ``seed_steps`` so that PEBBLE and oracle runs of one preset share it; ``--set sac.seed_steps=1000``
   gives PEBBLE's value).
2. until the first feedback session (step ``seed + U``): unsupervised pre-training. SAC updates on the
   *intrinsic* reward ``r_int = d_k(s') / std``, computed at sample time (hook ``batch_reward``): ``d_k`` is
   the distance from the batch's next-observation ``s'`` to its k-th nearest neighbour (k = 5) among the
   next-observations of every stored transition (the query itself, at distance 0, is not counted; see
   :func:`knn_distance`), and ``std`` is the running standard deviation of all ``d_k`` computed so far,
   updated with the batch before dividing (:class:`RunningMeanStd`).
3. feedback sessions at step ``seed + U`` and then every ``num_interact`` steps while the budget
   ``max_feedback`` is not spent. A session

   a. draws ``reward_batch`` query pairs (fewer if the budget has less left) of ``segment``-step segments
      from the last ``query_window`` transitions (None: the whole buffer, as PEBBLE). Segments never straddle
      an episode boundary. The first session samples uniformly (PEBBLE: the ensemble is still untrained);
      later ones use ``feed_type`` (``disagreement`` = PEBBLE's "ensemble" sampling: the top pairs by std
      over members of P(seg0 > seg1) among ``large_batch * reward_batch`` uniform candidates);
   b. asks the teacher (a :class:`parl_deep.teacher.SimulatedTeacher` preset) for labels on true rewards;
      every queried pair counts against the budget, including pairs a "skip" teacher drops;
   c. fits the reward ensemble on all labels so far (``reward_update`` epochs at most, early stop above
      97% training accuracy) -- :meth:`PEBBLEMethod.update_reward`;
   d. relabels the whole replay buffer with the ensemble-mean ``r_hat(s, a)`` (batched);
   e. after the first session only: resets the critic (and its target and optimiser) and runs
      ``reset_update`` SAC updates, as PEBBLE.

   From then on SAC learns on the learned reward only: the buffer's ``reward`` column is ``r_hat`` (new
   transitions are stored with the current ``r_hat``), the true reward lives in ``env_reward`` and is only
   used by the teacher and for logging.

SURF (``pebble-surf``) changes step a-c: segments are stored with ``crop_window`` extra steps on each side
(50 + 2*5 = 60), the teacher labels the central ``segment`` steps, ``inv_label_ratio`` uniformly drawn
unlabelled pairs per queried pair go to an unlabelled buffer, and the reward round adds the pseudo-label
loss (confidence ``tau``, weight ``lam``, ``mu`` unlabelled per labelled pair) with temporal crops of
length ``crop_min..crop_max`` (:mod:`parl_deep.surf`).

Logging (TensorBoard ``method/...`` and ``feedback.csv`` in the run directory, one row per session)
--------------------------------------------------------------------------------------------------
* ``queries``: pairs shown to the teacher so far (the budget spent); ``labels``: pairs kept (differs from
  ``queries`` only for the "skip" teacher).
* ``train_acc``: the ensemble's training accuracy at the end of the round.
* ``fresh_acc``: accuracy, *before* the round, on this session's newly labelled pairs (strict labels) --
  pairs the model has never been trained on, labelled by the real teacher, part of the budget. They are
  chosen by ``feed_type`` (hard pairs under disagreement sampling), so this is a pessimistic accuracy.
  NaN at the first session.
* ``eval_acc``: accuracy after the round on ``eval_pairs`` fresh uniformly drawn pairs from the query
  window labelled by the *true* reward comparison (a B-Pref style diagnostic: these labels are not added
  to the dataset, do not count against the budget and do not touch the teacher's random stream).
* ``reward_corr``: Pearson correlation between ``r_hat`` and the true reward over the last ``corr_window``
  transitions.
* ``query_window``: the number of transitions segments were drawn from at this session.

Device: ``reward_device`` (default ``"cpu"``; ``"cuda"`` or ``"cuda:N"``) puts the reward ensemble --
its training rounds, the relabelling of the buffer and ``r_hat`` of every new transition -- on that torch
device; SAC stays on the CPU. SURF's rounds are the cost that grows (their minibatches carry ``mu`` times as
many unlabelled pairs, 60 steps each); on a GPU they take seconds instead of minutes. ``a-parl`` accepts
only ``"cpu"``. Runs are not bit-identical across devices or machines (float32 reduction order). The
device is not part of the checkpoint's config check, so older checkpoints (without the field) still load.

Checkpoints hold the reward ensemble (weights, optimiser, its RNG), the labelled dataset (and SURF's
unlabelled buffer), the teacher's state, the feedback counters, this method's RNG, the intrinsic-reward
running statistics and the per-transition episode/time index used to cut segments; a resumed run continues
exactly.

Presets (:func:`task_preset`; every value can be overridden, ``parl train --max-feedback ... --set
method_config.key=value``). Sources: B-Pref/PEBBLE's released run scripts (rll-research/BPref,
``scripts/<task>/<budget>/<teacher>/run_PEBBLE.sh`` and ``config/train_PEBBLE.yaml``), SURF's README and
config (alinlab/SURF), the PEBBLE paper for budgets without a script:

=================  =========  ============  ============  =============  ===========================
task               unsup      num_interact  max_feedback  reward_batch   reward_update (PEBBLE/SURF)
=================  =========  ============  ============  =============  ===========================
dmc:walker-walk    9000       20000         1000 (*)      100            50 / 1000
  budget 500                                500           50
  budget 100                                100           10
metaworld:*        9000       5000          10000         50             10 / 20
  button-press                              20000         100
  sweep-into                                10000         50
  hammer                                    10000         50
  door-open                                 4000 (**)     20 (**)
other DMC tasks    9000       20000         1000          100            50 / 1000  (walker's values)
=================  =========  ============  ============  =============  ===========================

(*) When only ``max_feedback`` is given, ``reward_batch`` is the published batch for that budget on that
task if there is one, else ``max_feedback / 10`` (DMC) or ``max_feedback / 200`` (Meta-World), the ratios
of every published script. (**) door-open has no released script: the budget is the PEBBLE paper's, the
batch follows the Meta-World ratio. SURF: walker ``mu = 4``, ``inv_label_ratio = 100``; Meta-World
``mu = 4``, ``inv_label_ratio = 10``; ``tau = 0.99`` (both READMEs), ``lam = 1``. Common values:
``segment = 50``, ``large_batch = 10``, ``feed_type = disagreement``, ensemble of 3 MLPs 256x3 (tanh
output), reward lr 3e-4, reward minibatch 128, ``reset_update = 100``, k = 5 (``topK``).

Extending: A-PARL
-----------------
A-PARL changes the gradient of the reward-model update and samples from a recent window. The hooks:

* ``query_window``: a config option (number of most recent transitions segments are drawn from).
* :meth:`PEBBLEMethod.reward_extra_loss` returns ``None`` or a callable ``(ensemble, member, rng) ->
  (loss_tensor, stats)`` that the reward round adds to each member's Bradley-Terry loss on every
  minibatch (the ``extra_loss`` of :meth:`RewardEnsemble.train_round`). It is called once per round, just
  before training. (A-PARL does *not* put Term 2 here: as a fixed loss on every minibatch it dominated the
  round and diverged; :mod:`parl_deep.aparl` overrides :meth:`update_reward` and steps along Term 2 after
  the round instead.)
* :meth:`PEBBLEMethod.update_reward` runs one round (``reward_extra_loss`` then :meth:`fit_reward`);
  :meth:`fit_reward` is where PEBBLE / SURF differ, override either.
* :meth:`PEBBLEMethod.recent_pairs` returns random pairs of episode-internal windows of ``length``
  steps from the recent window (buffer rows, obs, act, next_obs, true rewards, and the first ``segment``
  steps as reward-model features): the segment and its continuation, for A-PARL's estimators.
* ``state_dict`` / ``load_state_dict`` call ``super()`` and extend the dict.
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from parl_deep.methods import DeviceUnavailableError, Method, register_method
from parl_deep.reward_model import QUERY_METHODS, PreferenceDataset, RewardEnsemble, SegmentPairBuffer, select_queries
from parl_deep.surf import SURF, SURFConfig
from parl_deep.teacher import PRESETS as TEACHER_PRESETS
from parl_deep.teacher import SimulatedTeacher

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.train import TrainLoop

__all__ = [
    "PEBBLEConfig", "PEBBLESURFConfig", "PEBBLEMethod", "PEBBLESURFMethod", "RunningMeanStd", "knn_distance",
    "valid_segment_starts", "task_preset", "FEEDBACK_FIELDS",
]

FEEDBACK_CSV = "feedback.csv"
FEEDBACK_FIELDS = ["step", "session", "queries", "labels", "new_queries", "new_labels", "dataset_size",
                   "unlabelled_size", "query_window", "feed_type", "fresh_acc", "train_acc", "train_loss",
                   "epochs", "eval_acc", "reward_corr", "pseudo_frac", "relabelled", "seconds", "wall_time_s"]


# =============================================================================================== config
@dataclass
class PEBBLEConfig:
    """PEBBLE options (``TrainConfig.method_config``). See the module docstring for presets and sources."""

    teacher: str = "oracle"
    num_unsup_steps: int = 9000
    num_interact: int = 20000
    max_feedback: int = 1000
    reward_batch: int = 100
    segment: int = 50
    large_batch: int = 10
    feed_type: str = "disagreement"
    first_feed_type: str = "uniform"
    reward_update: int = 50
    acc_threshold: float | None = 0.97
    reset_critic: bool = True
    reset_update: int = 100
    knn_k: int = 5
    query_window: int | None = None
    ensemble_size: int = 3
    reward_hidden: int = 256
    reward_layers: int = 3
    reward_lr: float = 3e-4
    reward_minibatch: int = 128
    reward_activation: str = "tanh"
    eval_pairs: int = 100
    corr_window: int = 10000
    reward_device: str = "cpu"  # torch device of the reward ensemble ("cpu", "cuda", "cuda:1"); SAC stays on CPU

    _positive = ("num_interact", "max_feedback", "reward_batch", "segment", "large_batch", "reward_update",
                 "knn_k", "ensemble_size", "reward_hidden", "reward_minibatch", "corr_window")
    _non_negative = ("num_unsup_steps", "reset_update", "reward_layers", "eval_pairs")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PEBBLEConfig":
        if not isinstance(d, dict):
            raise ValueError(f"method_config must be a mapping, got {type(d).__name__}")
        valid = cls.field_names()
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ValueError(f"unknown {cls._method_name()} option(s) {unknown}; valid: {', '.join(valid)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    @classmethod
    def _method_name(cls) -> str:
        return "pebble"

    def validate(self) -> None:
        def bad(msg: str):
            raise ValueError(f"{self._method_name()}: {msg}")

        for name in self._positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                bad(f"{name} must be a positive integer, got {v!r}")
        for name in self._non_negative:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                bad(f"{name} must be a non-negative integer, got {v!r}")
        if self.teacher not in TEACHER_PRESETS:
            bad(f"unknown teacher {self.teacher!r}; choose from {', '.join(TEACHER_PRESETS)}")
        for name in ("feed_type", "first_feed_type"):
            if getattr(self, name) not in QUERY_METHODS:
                bad(f"{name} must be one of {', '.join(QUERY_METHODS)}, got {getattr(self, name)!r}")
        if self.query_window is not None and (not isinstance(self.query_window, int)
                                              or isinstance(self.query_window, bool)
                                              or self.query_window < self.stored_length):
            bad(f"query_window must be None or an integer >= the stored segment length "
                f"({self.stored_length}), got {self.query_window!r}")
        if self.acc_threshold is not None and not (0.0 <= float(self.acc_threshold) <= 1.0):
            bad(f"acc_threshold must be None or lie in [0, 1], got {self.acc_threshold!r}")
        if not (isinstance(self.reward_lr, (int, float)) and self.reward_lr > 0):
            bad(f"reward_lr must be positive, got {self.reward_lr!r}")
        if self.reward_activation not in ("tanh", "sigmoid", "none"):
            bad(f"reward_activation must be tanh, sigmoid or none, got {self.reward_activation!r}")
        if not isinstance(self.reset_critic, bool):
            bad(f"reset_critic must be true or false, got {self.reset_critic!r}")
        if not isinstance(self.reward_device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", self.reward_device):
            bad(f"reward_device must be 'cpu', 'cuda' or 'cuda:N', got {self.reward_device!r}")

    @property
    def stored_length(self) -> int:
        """Length of the stored segments (SURF stores extra steps for cropping)."""
        return self.segment

    @property
    def label_slice(self) -> slice:
        return slice(0, self.segment)


@dataclass
class PEBBLESURFConfig(PEBBLEConfig):
    """PEBBLE options plus SURF's (``tau``, ``lam``, ``mu``, ``inv_label_ratio``, crops)."""

    tau: float = 0.99
    lam: float = 1.0
    mu: int = 4
    inv_label_ratio: int = 100
    crop_window: int = 5
    crop_min: int = 45
    crop_max: int = 55
    unlabelled_capacity: int = 10000
    reward_update: int = 1000

    _positive = PEBBLEConfig._positive + ("mu", "inv_label_ratio", "crop_min", "crop_max", "unlabelled_capacity")
    _non_negative = PEBBLEConfig._non_negative + ("crop_window",)

    @classmethod
    def _method_name(cls) -> str:
        return "pebble-surf"

    def validate(self) -> None:
        super().validate()
        try:
            self.surf_config()
        except ValueError as exc:
            raise ValueError(f"pebble-surf: {exc}") from None

    def surf_config(self) -> SURFConfig:
        return SURFConfig(tau=float(self.tau), lam=float(self.lam), mu=int(self.mu), segment=self.segment,
                          window=self.crop_window, crop_min=self.crop_min, crop_max=self.crop_max,
                          inv_label_ratio=int(self.inv_label_ratio))

    @property
    def stored_length(self) -> int:
        return self.segment + 2 * self.crop_window

    @property
    def label_slice(self) -> slice:
        return slice(self.crop_window, self.crop_window + self.segment)


# Published feedback settings (see the module docstring for sources).
_WALKER_BUDGETS = {100: 10, 500: 50, 1000: 100}  # max_feedback -> reward_batch (SURF README; BPref scripts)
_METAWORLD_TASKS = {  # task -> (max_feedback, reward_batch)
    "button-press": (20000, 100),  # BPref scripts/button_press/20000
    "sweep-into": (10000, 50),  # BPref scripts/sweep_into/10000
    "hammer": (10000, 50),  # SURF README
    "door-open": (4000, 20),  # PEBBLE paper budget; batch = budget / 200 (no released script)
}
_METAWORLD_BUDGETS = {  # (task, max_feedback) -> reward_batch, from the released scripts
    ("button-press", 10000): 50, ("button-press", 20000): 100,
    ("sweep-into", 10000): 50, ("sweep-into", 20000): 100,
    ("hammer", 10000): 50,
}


def task_preset(env: str, method: str = "pebble", max_feedback: int | None = None) -> dict[str, Any]:
    """Published feedback settings for ``env`` (a ``TrainConfig.env`` name) and ``method``.

    ``max_feedback`` (if the user sets it) selects the published per-session batch for that budget, or the
    published ratio when that budget has no script.
    """
    surf = method == "pebble-surf"
    if env.startswith("metaworld:"):
        task = env.split(":", 1)[1]
        budget, batch = _METAWORLD_TASKS.get(task, (10000, 50))
        if max_feedback is not None:
            budget = int(max_feedback)
            batch = _METAWORLD_BUDGETS.get((task, budget), max(1, budget // 200))
        out = dict(num_unsup_steps=9000, num_interact=5000, max_feedback=budget, reward_batch=batch,
                   reward_update=20 if surf else 10)
        if surf:
            out.update(mu=4, inv_label_ratio=10, tau=0.99)
        return out
    budget = 1000 if max_feedback is None else int(max_feedback)
    batch = _WALKER_BUDGETS.get(budget, max(1, budget // 10))
    out = dict(num_unsup_steps=9000, num_interact=20000, max_feedback=budget, reward_batch=batch,
               reward_update=1000 if surf else 50)
    if surf:
        out.update(mu=4, inv_label_ratio=100, tau=0.99)
    return out


_DEVICE_FIELDS = ("reward_device",)  # config fields that say where a run executes, not what it computes


# ============================================================================================ utilities
class RunningMeanStd:
    """Exact running mean / population variance of every value seen (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    def update(self, x: Any) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        n = x.size
        if n == 0:
            return
        b_mean = float(x.mean())
        b_m2 = float(((x - b_mean) ** 2).sum())
        tot = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / tot
        self.m2 += b_m2 + delta * delta * self.count * n / tot
        self.count = tot

    @property
    def var(self) -> float:
        return self.m2 / self.count if self.count else float("nan")

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, sd: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(sd["count"]), float(sd["mean"]), float(sd["m2"])


def knn_distance(query: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 16384) -> torch.Tensor:
    """Euclidean distance from each query row to its k-th nearest *other* row of ``reference``.

    The queries are assumed to be rows of ``reference`` (batch states drawn from the replay buffer), so the
    smallest distance (the query itself, 0) is skipped: the result is the ``(k+1)``-th smallest distance,
    as PEBBLE's particle entropy estimate. Shape ``(B,)``; ``reference`` must have at least ``k + 1`` rows.
    """
    n = reference.shape[0]
    if n < k + 1:
        raise ValueError(f"kNN with k={k} needs at least {k + 1} reference states, got {n}")
    best: torch.Tensor | None = None
    for s in range(0, n, chunk):
        d = torch.cdist(query, reference[s:s + chunk])  # matrix-multiply form: ~3x faster, ~1e-6 abs error
        cand = d if best is None else torch.cat([best, d], dim=1)
        best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
    return best[:, k]


def valid_segment_starts(ep_id: np.ndarray, t: np.ndarray, length: int, now: int | None = None,
                         window: int | None = None) -> np.ndarray:
    """Buffer rows ``i`` such that rows ``i .. i+length-1`` are consecutive steps of one episode.

    ``ep_id[r]`` / ``t[r]`` are the episode number and global step index of the transition in row ``r``
    (a ring buffer may wrap: the time check rejects windows that run over the write pointer). With
    ``window``, the whole segment must lie among the ``window`` most recent transitions (``t >= now -
    window``, ``now`` = transitions stored so far).
    """
    size = ep_id.shape[0]
    if size < length:
        return np.zeros(0, dtype=np.int64)
    s = np.arange(size - length + 1)
    e = s + length - 1
    ok = (ep_id[s] == ep_id[e]) & (t[e].astype(np.int64) - t[s] == length - 1)
    if window is not None:
        if now is None:
            raise ValueError("window needs now")
        ok &= t[s] >= now - window
    return s[ok]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _seed(base: int, tag: int) -> int:
    return int(np.random.SeedSequence([int(base) % 2**32, tag]).generate_state(1)[0])


# =============================================================================================== method
@register_method("pebble")
class PEBBLEMethod(Method):
    """PEBBLE: unsupervised pre-training, preference queries, reward ensemble, relabelling."""

    config_cls: type[PEBBLEConfig] = PEBBLEConfig
    log_files = (FEEDBACK_CSV,)

    # -- config plumbing (called by TrainConfig.validate and the CLI)
    @classmethod
    def resolve_config(cls, config: dict[str, Any], env: str) -> dict[str, Any]:
        """Task preset filled in under the user's options; every field explicit (saved in config.json)."""
        cls.config_cls.from_dict(dict(config))  # validates keys and values early
        preset = task_preset(env, cls.name, config.get("max_feedback"))
        merged = {**asdict(cls.config_cls()), **preset, **config}
        return asdict(cls.config_cls.from_dict(merged))

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        cls.config_cls.from_dict(dict(config))

    @classmethod
    def check_runtime(cls, config: dict[str, Any]) -> None:
        """``reward_device`` must be a device torch sees (checked in the process that trains, never in a
        bench parent: touching CUDA before the workers fork would break them)."""
        device = str(config.get("reward_device", "cpu"))
        if device == "cpu":
            return
        n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= n_gpu:
            raise DeviceUnavailableError(f"{cls.name}: reward_device={device!r} but torch sees "
                                         f"{n_gpu or 'no'} CUDA device{'' if n_gpu == 1 else 's'}")

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        super().__init__(loop, config)
        self.pcfg = self.config_cls.from_dict(self.resolve_config(config, loop.cfg.env))
        c, seed = self.pcfg, loop.cfg.seed
        buf = loop.buffer
        self.obs_dim, self.act_dim = buf.obs_dim, buf.act_dim
        self.check_runtime(asdict(c))
        self.reward_model = RewardEnsemble(
            self.obs_dim, self.act_dim, n_members=c.ensemble_size, hidden=c.reward_hidden, layers=c.reward_layers,
            lr=c.reward_lr, batch_size=c.reward_minibatch, activation=c.reward_activation, seed=_seed(seed, 1),
            device=c.reward_device)
        self.dataset = PreferenceDataset()
        self.teacher = SimulatedTeacher.preset(c.teacher, seed=_seed(seed, 2))
        self.rng = np.random.default_rng(_seed(seed, 3))
        self.ent_stats = RunningMeanStd()
        # per buffer row: episode number and global step index of the stored transition
        self.ep_id = np.full(buf.capacity, -1, dtype=np.int64)
        self.t_index = np.full(buf.capacity, -1, dtype=np.int64)
        self.queries = 0  # pairs shown to the teacher (the budget spent)
        self.labels = 0  # pairs kept (labelled)
        self.sessions = 0
        self.last_session_step = -1
        self.reward_updates = 0
        self.relabels = 0

    # ------------------------------------------------------------------------------------------ hooks
    def reward(self, obs, act, next_obs, env_reward: float) -> float:
        loop = self.loop
        row = loop.buffer.ptr
        self.ep_id[row] = loop.episode
        self.t_index[row] = loop.step
        # ensemble-mean r_hat of this one transition (the same numbers as reward_model.r_hat, without its
        # batch plumbing: this runs every environment step)
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
        ref = torch.from_numpy(loop.buffer.column("next_obs"))
        if ref.shape[0] < 2:
            return torch.zeros(next_obs.shape[0], 1)
        # fewer than k + 1 stored states only happens with tiny seed phases: use the farthest other state
        d = knn_distance(next_obs, ref, min(self.pcfg.knn_k, ref.shape[0] - 1)).double()
        self.ent_stats.update(d.numpy())
        std = self.ent_stats.std
        r = d / std if std > 0 else torch.zeros_like(d)
        return r.to(torch.float32).unsqueeze(1)

    def on_step(self, step: int, loop: "TrainLoop") -> dict[str, float]:
        c = self.pcfg
        due = (step >= loop.cfg.sac.seed_steps + c.num_unsup_steps if self.sessions == 0
               else step - self.last_session_step >= c.num_interact)
        if due and self.queries < c.max_feedback:
            return self.feedback_session(step, loop)
        if self.sessions == 0 and step % 1000 == 0 and self.ent_stats.count:
            return {"intrinsic_std": self.ent_stats.std, "intrinsic_mean": self.ent_stats.mean}
        return {}

    # ------------------------------------------------------------------------------------- segments
    def _window_now(self) -> int:
        return self.loop.step

    def sample_segment_rows(self, n: int, length: int, window: int | None = None) -> np.ndarray:
        """``(n, length)`` buffer rows of ``n`` random episode-internal windows (uniform over valid starts)."""
        size = self.loop.buffer.size
        starts = valid_segment_starts(self.ep_id[:size], self.t_index[:size], length, self._window_now(), window)
        if starts.size == 0:
            raise _NotEnoughData(f"no {length}-step segment inside one episode in the window")
        s = self.rng.choice(starts, size=n, replace=True)
        return s[:, None] + np.arange(length)[None, :]

    def _features(self, rows: np.ndarray) -> np.ndarray:
        buf = self.loop.buffer
        o = buf.column("obs")[rows]
        a = buf.column("act")[rows]
        return np.concatenate([o, a], axis=-1)

    def _true_rewards(self, rows: np.ndarray) -> np.ndarray:
        return self.loop.buffer.column("env_reward")[rows][..., 0]

    def recent_pairs(self, n: int, length: int | None = None, window: int | None = None) -> dict[str, np.ndarray]:
        """``n`` random pairs of ``length``-step windows (default: the stored segment length) from the last
        ``window`` transitions (default: ``query_window``), each inside one episode.

        Returns ``rows0/rows1`` (n, length) buffer rows; ``obs0/obs1``, ``act0/act1``, ``next_obs0/next_obs1``
        (n, length, dim); ``reward0/reward1`` true rewards (n, length); ``seg0/seg1`` the reward-model
        features of the labelled part of the first ``stored_length`` steps (n, segment, obs_dim + act_dim).
        The steps after the segment are its continuation in the same episode.
        """
        c = self.pcfg
        length = c.stored_length if length is None else int(length)
        if length < c.stored_length:
            raise ValueError(f"length must be >= the stored segment length {c.stored_length}")
        window = c.query_window if window is None else window
        buf = self.loop.buffer
        out: dict[str, np.ndarray] = {}
        for j in (0, 1):
            rows = self.sample_segment_rows(n, length, window)
            out[f"rows{j}"] = rows
            out[f"obs{j}"] = buf.column("obs")[rows]
            out[f"act{j}"] = buf.column("act")[rows]
            out[f"next_obs{j}"] = buf.column("next_obs")[rows]
            out[f"reward{j}"] = self._true_rewards(rows)
            out[f"seg{j}"] = self._features(rows[:, :c.stored_length][:, c.label_slice])
        return out

    def _sample_pairs(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.pcfg
        r0 = self.sample_segment_rows(n, c.stored_length, c.query_window)
        r1 = self.sample_segment_rows(n, c.stored_length, c.query_window)
        return r0, r1

    # ------------------------------------------------------------------------------------- feedback
    def select_pairs(self, n: int, feed_type: str) -> tuple[np.ndarray, np.ndarray]:
        """Buffer rows ``(n, stored_length)`` of the two segments of the ``n`` pairs to query."""
        c = self.pcfg
        if feed_type == "uniform":
            return self._sample_pairs(n)
        r0, r1 = self._sample_pairs(n * c.large_batch)
        sl = c.label_slice
        idx = select_queries(feed_type, n, self._features(r0[:, sl]), self._features(r1[:, sl]),
                             ensemble=self.reward_model, rng=self.rng, labelled=self._labelled_for_kcenter())
        return r0[idx], r1[idx]

    def _labelled_for_kcenter(self) -> PreferenceDataset | None:
        if len(self.dataset) == 0:
            return None
        sl = self.pcfg.label_slice
        view = PreferenceDataset()
        view.add(self.dataset.seg0[:, sl], self.dataset.seg1[:, sl], self.dataset.labels)
        return view

    def add_unlabelled(self, n_queries: int) -> None:
        """SURF adds unlabelled pairs here (PEBBLE: nothing)."""

    def record_session_pairs(self, rows0: np.ndarray, rows1: np.ndarray, labels: np.ndarray) -> None:
        """The buffer rows and labels of this session's kept pairs (A-PARL builds its estimator batch from
        them; PEBBLE: nothing)."""

    def reward_extra_loss(self) -> Callable | None:
        """Extra per-member loss for the next reward round (A-PARL's Term 2); PEBBLE: none."""
        return None

    def fit_reward(self, extra_loss: Callable | None) -> dict[str, Any]:
        """One round of reward learning on ``self.dataset`` (Bradley-Terry + ``extra_loss``)."""
        c = self.pcfg
        return self.reward_model.train_round(self.dataset, max_epochs=c.reward_update, acc_threshold=c.acc_threshold,
                                             extra_loss=extra_loss)

    def update_reward(self) -> dict[str, Any]:
        """Fit the reward model on all labels so far; subclasses change the gradient via the two hooks."""
        stats = self.fit_reward(self.reward_extra_loss())
        self.reward_updates += 1
        return stats

    def relabel(self) -> int:
        """Replace the buffer's learned-reward column by the current ``r_hat`` (batched)."""
        self.loop.buffer.relabel(lambda o, a, _n: self.reward_model.r_hat(o, a))
        self.relabels += 1
        return len(self.loop.buffer)

    def reset_critic(self, loop: "TrainLoop") -> None:
        """Fresh critic weights (target = critic) and a fresh critic optimiser state, in place."""
        loop.agent.reset_critic()

    def feedback_session(self, step: int, loop: "TrainLoop") -> dict[str, float]:
        c = self.pcfg
        t0 = time.time()
        first = self.sessions == 0
        n = min(c.reward_batch, c.max_feedback - self.queries)
        try:
            r0, r1 = self.select_pairs(n, c.first_feed_type if first else c.feed_type)
        except _NotEnoughData:
            return {}  # too little data in the window: try again next step
        sl = c.label_slice
        y, keep = self.teacher.label(self._true_rewards(r0[:, sl]), self._true_rewards(r1[:, sl]))
        s0, s1 = self._features(r0), self._features(r1)
        fresh_acc = float("nan")
        if self.reward_updates > 0 and keep.any():
            fresh_acc = self.reward_model.accuracy(s0[keep][:, sl], s1[keep][:, sl], y[keep])
        if keep.any():
            self.dataset.add(s0[keep], s1[keep], y[keep])
        self.queries += n
        self.labels += int(keep.sum())
        self.record_session_pairs(r0[keep], r1[keep], y[keep])
        self.add_unlabelled(n)
        stats: dict[str, Any] = {}
        relabelled = 0
        if len(self.dataset) > 0:
            stats = self.update_reward()
            relabelled = self.relabel()
        if first and c.reset_critic:
            self.reset_critic(loop)
            for _ in range(c.reset_update):
                loop.agent.update(*loop.buffer.sample(loop.cfg.sac.batch_size, loop.rng))
        self.sessions += 1
        self.last_session_step = step
        window = loop.buffer.size if c.query_window is None else min(c.query_window, loop.buffer.size)
        row = {
            "step": step, "session": self.sessions, "queries": self.queries, "labels": self.labels,
            "new_queries": n, "new_labels": int(keep.sum()), "dataset_size": len(self.dataset),
            "unlabelled_size": self._unlabelled_size(), "query_window": window,
            "feed_type": c.first_feed_type if first else c.feed_type, "fresh_acc": fresh_acc,
            "train_acc": stats.get("accuracy", float("nan")), "train_loss": stats.get("loss", float("nan")),
            "epochs": stats.get("epochs", 0), "eval_acc": self.eval_accuracy(),
            "reward_corr": self.reward_correlation(), "pseudo_frac": stats.get("pseudo_frac", ""),
            "relabelled": relabelled, "seconds": time.time() - t0, "wall_time_s": loop._wall(),
        }
        self._write_row(loop.run_dir / FEEDBACK_CSV, row)
        return {k: float(v) for k, v in row.items()
                if k not in ("step", "feed_type", "wall_time_s") and v != "" and v is not None}

    def _unlabelled_size(self) -> int:
        return 0

    @staticmethod
    def _write_row(path: Path, row: dict, fields: list[str] = FEEDBACK_FIELDS) -> None:
        from parl_deep.train import CSVLog

        log = CSVLog(path, fields)
        try:
            log.write(row)
        finally:
            log.close()

    # ------------------------------------------------------------------------------------ diagnostics
    def eval_accuracy(self) -> float:
        """Accuracy on ``eval_pairs`` uniform pairs labelled by the true-return comparison (not stored)."""
        c = self.pcfg
        if c.eval_pairs == 0 or self.reward_updates == 0:
            return float("nan")
        try:
            r0, r1 = self._sample_pairs(c.eval_pairs)
        except _NotEnoughData:
            return float("nan")
        sl = c.label_slice
        g0 = self._true_rewards(r0[:, sl]).astype(np.float64).sum(1)
        g1 = self._true_rewards(r1[:, sl]).astype(np.float64).sum(1)
        strict = g0 != g1
        if not strict.any():
            return float("nan")
        y = (g0 > g1).astype(np.float32)[strict]
        return self.reward_model.accuracy(self._features(r0[:, sl])[strict], self._features(r1[:, sl])[strict], y)

    def reward_correlation(self) -> float:
        """Pearson correlation of the stored learned reward with the true reward, last ``corr_window`` steps."""
        buf = self.loop.buffer
        recent = self.t_index[:buf.size] >= self._window_now() - self.pcfg.corr_window
        return _pearson(buf.column("reward")[recent, 0], buf.column("env_reward")[recent, 0])

    # ------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        size = self.loop.buffer.size
        return {
            "config": asdict(self.pcfg),
            "reward_model": self.reward_model.state_dict(),
            "dataset": self.dataset.state_dict(),
            "teacher": self.teacher.state_dict(),
            "rng": self.rng.bit_generator.state,
            "ent_stats": self.ent_stats.state_dict(),
            "ep_id": self.ep_id[:size].copy(),
            "t_index": self.t_index[:size].copy(),
            "counters": {"queries": self.queries, "labels": self.labels, "sessions": self.sessions,
                         "last_session_step": self.last_session_step, "reward_updates": self.reward_updates,
                         "relabels": self.relabels},
        }

    def load_state_dict(self, sd: dict) -> None:
        # where the reward model runs is not part of what the run computes, and checkpoints written before
        # ``reward_device`` existed lack the field
        saved, now = ({k: v for k, v in d.items() if k not in _DEVICE_FIELDS}
                      for d in (sd["config"], asdict(self.pcfg)))
        if saved != now:
            raise ValueError(f"{self.name} config mismatch: checkpoint {saved} vs {now}")
        self.reward_model.load_state_dict(sd["reward_model"])
        self.dataset = PreferenceDataset()
        self.dataset.load_state_dict(sd["dataset"])
        self.teacher.load_state_dict(sd["teacher"])
        g = np.random.default_rng()
        g.bit_generator.state = sd["rng"]
        self.rng = g
        self.ent_stats.load_state_dict(sd["ent_stats"])
        n = len(sd["ep_id"])
        self.ep_id[:] = -1
        self.t_index[:] = -1
        self.ep_id[:n] = sd["ep_id"]
        self.t_index[:n] = sd["t_index"]
        for k, v in sd["counters"].items():
            setattr(self, k, int(v))


class _NotEnoughData(RuntimeError):
    pass


@register_method("pebble-surf")
class PEBBLESURFMethod(PEBBLEMethod):
    """PEBBLE + SURF: 60-step stored segments with temporal crops, pseudo-labelled unlabelled pairs."""

    config_cls = PEBBLESURFConfig

    def __init__(self, loop: "TrainLoop", config: dict[str, Any]):
        super().__init__(loop, config)
        self.surf = SURF(self.pcfg.surf_config())
        self.unlabelled = SegmentPairBuffer(capacity=self.pcfg.unlabelled_capacity)

    def add_unlabelled(self, n_queries: int) -> None:
        n = self.pcfg.inv_label_ratio * n_queries
        r0, r1 = self._sample_pairs(n)
        self.unlabelled.add(self._features(r0), self._features(r1))

    def _unlabelled_size(self) -> int:
        return len(self.unlabelled)

    def fit_reward(self, extra_loss: Callable | None) -> dict[str, Any]:
        """SURF's round: cropped labelled pairs + pseudo-label loss (+ ``extra_loss``)."""
        c, surf, ens = self.pcfg, self.surf, self.reward_model
        losses = [fn for fn in (surf.unlabelled_term(self.unlabelled, ens.batch_size), extra_loss) if fn is not None]
        combined = None
        if losses:
            def combined(e: RewardEnsemble, member: int, r: np.random.Generator):
                total, stats = None, {}
                for fn in losses:
                    l, st = fn(e, member, r)
                    total = l if total is None else total + l
                    stats.update(st)
                return total, stats

        return ens.train_round(self.dataset, max_epochs=c.reward_update, acc_threshold=c.acc_threshold,
                               mask_fn=surf.crop_masks, extra_loss=combined)

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["unlabelled"] = self.unlabelled.state_dict()
        return sd

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.unlabelled = SegmentPairBuffer(capacity=self.pcfg.unlabelled_capacity)
        self.unlabelled.load_state_dict(sd["unlabelled"])
