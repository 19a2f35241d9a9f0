"""Simulated preference teacher in the style of B-Pref (Lee et al., 2021).

The teacher compares two segments of true per-step rewards and returns a
preference label.  It is the "human" h(y | tau_0, tau_1) of the PARL paper
(eq. 5): it only sees true rewards, never the learned reward model.

Label convention (this project, PARL eq. 5)
-------------------------------------------
``y = 1``   segment 0 is preferred,
``y = 0``   segment 1 is preferred,
``y = 0.5`` the two segments are "equally preferable".

B-Pref uses the opposite encoding (its label 1 means the *second* segment is
preferred, and -1 means "equal").  The mapping is::

    y_parl = 1 - y_bpref      for y_bpref in {0, 1}
    y_parl = 0.5              for y_bpref == -1

Labelling procedure (per pair, in this order; as in B-Pref's ``get_label``)
---------------------------------------------------------------------------
Let ``S_i = sum_t r_i[t]`` be the plain segment return and
``W_i = sum_t gamma**(T-1-t) * r_i[t]`` the myopically weighted return
(the last step has weight 1, earlier steps are discounted).

1. *skip*: if skipping is active, the pair is dropped (``mask = False``,
   label NaN) when ``max(S_0, S_1) <= thres_skip``, i.e. both segments have
   returns at or below the threshold.
2. *rational / Bradley-Terry*: with ``beta = inf`` the label is
   ``1 if W_0 >= W_1 else 0`` (a tie goes to segment 0, as in B-Pref);
   with finite ``beta >= 0`` the label is drawn as
   ``y ~ Bernoulli(sigmoid(beta * (W_0 - W_1)))``.
3. *mistake*: with probability ``eps_mistake`` the label is flipped
   (``y <- 1 - y``), independently per pair.
4. *equal*: if ``|S_0 - S_1| < thres_equal`` the label is set to 0.5
   (this overrides steps 2-3, as in B-Pref).

Threshold rule
--------------
B-Pref sets both thresholds from the mean true return of the 10 most recent
training episodes, rescaled to the segment length:
``thres = eps * mean_return * T / max_episode_steps``.  We use the same rule,
written per step so that it does not need the episode length as a separate
constant::

    rbar        = mean over the last ``window`` (=10) episodes of return / length
    thres_skip  = eps_skip  * T * rbar
    thres_equal = eps_equal * T * |rbar|

Episodes are reported by the training loop through
:meth:`SimulatedTeacher.observe_episode`.  Until at least one episode has been
reported, ``rbar`` falls back to the running mean per-step true reward of
*all segments the teacher has been asked to label so far, including the
current batch* (so the very first query already has a threshold).

Notes on the differences with B-Pref's code, all deliberate:

* B-Pref's training loop multiplies by ``eps`` twice after the first feedback
  session (``set_teacher_thres_skip(new_margin * eps)`` and the setter
  multiplies by ``eps`` again).  We apply ``eps`` once, as in the B-Pref paper
  and in B-Pref's first feedback session.
* The equal threshold uses ``|rbar|`` so that it stays a non-negative margin
  when rewards are negative.  Skipping is only active when
  ``thres_skip > 0`` (as in B-Pref).  For the DMC / Meta-World tasks used in
  the paper rewards are non-negative and both rules coincide with B-Pref.

Presets (values from B-Pref's released run scripts, ``scripts/*/*/<teacher>``):

=========  ======  =====  ===========  ========  =========
preset     beta    gamma  eps_mistake  eps_skip  eps_equal
=========  ======  =====  ===========  ========  =========
oracle     inf     1.0    0            0         0
noisy      1.0     1.0    0            0         0
mistake    inf     1.0    0.1          0         0
skip       inf     1.0    0            0.1       0
myopic     inf     0.9    0            0         0
equal      inf     1.0    0            0         0.1
=========  ======  =====  ===========  ========  =========
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

__all__ = ["SimulatedTeacher", "PRESETS", "myopic_weights"]

PRESETS: dict[str, dict[str, float]] = {
    "oracle": dict(beta=math.inf, gamma=1.0, eps_mistake=0.0, eps_skip=0.0, eps_equal=0.0),
    "noisy": dict(beta=1.0, gamma=1.0, eps_mistake=0.0, eps_skip=0.0, eps_equal=0.0),
    "mistake": dict(beta=math.inf, gamma=1.0, eps_mistake=0.1, eps_skip=0.0, eps_equal=0.0),
    "skip": dict(beta=math.inf, gamma=1.0, eps_mistake=0.0, eps_skip=0.1, eps_equal=0.0),
    "myopic": dict(beta=math.inf, gamma=0.9, eps_mistake=0.0, eps_skip=0.0, eps_equal=0.0),
    "equal": dict(beta=math.inf, gamma=1.0, eps_mistake=0.0, eps_skip=0.0, eps_equal=0.1),
}


def myopic_weights(T: int, gamma: float) -> np.ndarray:
    """Weights ``gamma**(T-1-t)`` for ``t = 0..T-1`` (float64, last weight 1)."""
    if T < 1:
        raise ValueError(f"segment length must be >= 1, got {T}")
    return np.power(float(gamma), np.arange(T - 1, -1, -1, dtype=np.float64))


def _check_prob(name: str, v: float) -> float:
    v = float(v)
    if not (0.0 <= v <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {v}")
    return v


class SimulatedTeacher:
    """B-Pref style scripted teacher.  See the module docstring for semantics.

    Parameters
    ----------
    beta : rationality; ``math.inf`` (default) is the perfectly rational
        teacher, a finite ``beta >= 0`` samples Bradley-Terry labels.
    gamma : myopia discount in (0, 1]; 1 means no myopia.
    eps_mistake : probability of flipping a (non-equal) label.
    eps_skip, eps_equal : scale factors of the skip / equal thresholds
        (0 disables the behaviour).
    seed : seed of the teacher's private ``numpy.random.Generator``.
    window : number of recent episodes averaged for the threshold (B-Pref: 10).
    """

    def __init__(
        self,
        beta: float = math.inf,
        gamma: float = 1.0,
        eps_mistake: float = 0.0,
        eps_skip: float = 0.0,
        eps_equal: float = 0.0,
        seed: int | None = None,
        window: int = 10,
    ) -> None:
        beta = float(beta)
        if math.isnan(beta) or beta < 0:
            raise ValueError(f"beta must be >= 0 or inf, got {beta}")
        gamma = float(gamma)
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
        if int(window) < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.beta = beta
        self.gamma = gamma
        self.eps_mistake = _check_prob("eps_mistake", eps_mistake)
        self.eps_skip = _check_prob("eps_skip", eps_skip)
        self.eps_equal = _check_prob("eps_equal", eps_equal)
        self.window = int(window)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        # running statistics behind the thresholds
        self._episode_rates: deque[float] = deque(maxlen=self.window)
        self._seg_reward_sum = 0.0
        self._seg_reward_count = 0

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, seed: int | None = None, **overrides: Any) -> "SimulatedTeacher":
        """Build one of B-Pref's teachers: oracle, noisy, mistake, skip, myopic, equal."""
        if name not in PRESETS:
            raise ValueError(f"unknown teacher preset {name!r}; choose from {sorted(PRESETS)}")
        kw = dict(PRESETS[name])
        kw.update(overrides)
        return cls(seed=seed, **kw)

    # --------------------------------------------------------------- statistics
    def observe_episode(self, true_return: float, length: int) -> None:
        """Record the true return of a finished training episode of ``length`` steps."""
        true_return = float(true_return)
        length = int(length)
        if not math.isfinite(true_return):
            raise ValueError(f"episode return must be finite, got {true_return}")
        if length < 1:
            raise ValueError(f"episode length must be >= 1, got {length}")
        self._episode_rates.append(true_return / length)

    def mean_step_reward(self) -> float | None:
        """Per-step reward level ``rbar`` behind the thresholds (None if unknown)."""
        if self._episode_rates:
            return float(np.mean(self._episode_rates))
        if self._seg_reward_count > 0:
            return self._seg_reward_sum / self._seg_reward_count
        return None

    def thresholds(self, T: int) -> tuple[float, float]:
        """``(thres_skip, thres_equal)`` for segments of length ``T`` at the current state."""
        rbar = self.mean_step_reward()
        if rbar is None:
            return 0.0, 0.0
        return self.eps_skip * T * rbar, self.eps_equal * T * abs(rbar)

    # ----------------------------------------------------------------- labelling
    @staticmethod
    def _validate(rewards_0: Any, rewards_1: Any) -> tuple[np.ndarray, np.ndarray]:
        r0 = np.asarray(rewards_0, dtype=np.float64)
        r1 = np.asarray(rewards_1, dtype=np.float64)
        if r0.ndim != 2 or r1.ndim != 2:
            raise ValueError(
                f"rewards must have shape (batch, T); got {r0.shape} and {r1.shape}"
            )
        if r0.shape != r1.shape:
            raise ValueError(f"reward shapes differ: {r0.shape} vs {r1.shape}")
        if r0.shape[1] < 1:
            raise ValueError("segments must have at least one step")
        if not (np.all(np.isfinite(r0)) and np.all(np.isfinite(r1))):
            raise ValueError("rewards contain NaN or inf")
        return r0, r1

    def weighted_returns(self, rewards: Any) -> np.ndarray:
        """``W = sum_t gamma**(T-1-t) r[t]`` for rewards of shape (batch, T)."""
        r = np.asarray(rewards, dtype=np.float64)
        if r.ndim != 2:
            raise ValueError(f"rewards must have shape (batch, T); got {r.shape}")
        return r @ myopic_weights(r.shape[1], self.gamma)

    def preference_probability(self, rewards_0: Any, rewards_1: Any) -> np.ndarray:
        """P(y = 1) from step 2 (before mistakes, skip and equal), shape (batch,)."""
        r0, r1 = self._validate(rewards_0, rewards_1)
        d = self.weighted_returns(r0) - self.weighted_returns(r1)
        if math.isinf(self.beta):
            return (d >= 0).astype(np.float64)
        z = self.beta * d
        # numerically stable logistic
        out = np.empty_like(z)
        pos = z >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
        ez = np.exp(z[~pos])
        out[~pos] = ez / (1.0 + ez)
        return out

    def label(self, rewards_0: Any, rewards_1: Any) -> tuple[np.ndarray, np.ndarray]:
        """Label a batch of segment pairs.

        ``rewards_0``/``rewards_1``: true per-step rewards, shape (batch, T).

        Returns ``(labels, mask)``: ``labels`` float32 of shape (batch,) with
        values in {0, 0.5, 1} for kept pairs and NaN for skipped ones; ``mask``
        bool of shape (batch,), True for kept pairs.  Use ``labels[mask]``.

        The generator draws exactly ``2 * batch`` uniforms per call, whatever
        the configuration, so label streams are reproducible across settings.
        """
        r0, r1 = self._validate(rewards_0, rewards_1)
        n, T = r0.shape

        # update the fallback statistic with the segments seen so far
        self._seg_reward_sum += float(r0.sum() + r1.sum())
        self._seg_reward_count += 2 * n * T
        thres_skip, thres_equal = self.thresholds(T)

        u_label = self._rng.random(n)
        u_mistake = self._rng.random(n)

        s0 = r0.sum(axis=1)
        s1 = r1.sum(axis=1)

        p = self.preference_probability(r0, r1)
        if math.isinf(self.beta):
            y = p.copy()
        else:
            y = (u_label < p).astype(np.float64)

        flip = u_mistake < self.eps_mistake
        y[flip] = 1.0 - y[flip]

        if self.eps_equal > 0 and thres_equal > 0:
            y[np.abs(s0 - s1) < thres_equal] = 0.5

        mask = np.ones(n, dtype=bool)
        if self.eps_skip > 0 and thres_skip > 0:
            mask = np.maximum(s0, s1) > thres_skip
        y[~mask] = np.nan
        return y.astype(np.float32), mask

    # -------------------------------------------------------------- checkpoints
    def label_pairs(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """The :class:`parl_deep.preference.teachers.Teacher` protocol: :meth:`label` on the pairs' true rewards."""
        return self.label(pairs.reward0, pairs.reward1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": dict(
                beta=self.beta,
                gamma=self.gamma,
                eps_mistake=self.eps_mistake,
                eps_skip=self.eps_skip,
                eps_equal=self.eps_equal,
                window=self.window,
            ),
            "rng": self._rng.bit_generator.state,
            "episode_rates": list(self._episode_rates),
            "seg_reward_sum": self._seg_reward_sum,
            "seg_reward_count": self._seg_reward_count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cfg = state["config"]
        mine = self.state_dict()["config"]
        if cfg != mine:
            raise ValueError(f"teacher config mismatch: checkpoint {cfg} vs this teacher {mine}")
        bg = np.random.default_rng()
        bg.bit_generator.state = state["rng"]
        self._rng = bg
        self._episode_rates = deque((float(v) for v in state["episode_rates"]), maxlen=self.window)
        self._seg_reward_sum = float(state["seg_reward_sum"])
        self._seg_reward_count = int(state["seg_reward_count"])

    def __repr__(self) -> str:
        return (
            f"SimulatedTeacher(beta={self.beta}, gamma={self.gamma}, eps_mistake={self.eps_mistake}, "
            f"eps_skip={self.eps_skip}, eps_equal={self.eps_equal})"
        )
