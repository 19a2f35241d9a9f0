"""The win rate against a reference: a designer utility on the policy (the paper's eqs. 3-4), for A-PARL.

Eqs. 3-4 score the policy by a designer utility, G(phi) = E_{tau ~ rho(.; theta*(phi))}[U(tau)]. Here

    U(tau) = P_teacher(tau beats tau_ref),   tau_ref ~ rho_ref (a fixed reference distribution of segments),

so G(phi) is the probability that the teacher prefers a segment of the current policy to a reference segment
(:class:`parl_core.WinRateObjective` is the exact, enumerated version on tabular problems). U does not depend on
phi, so the direct term of eq. 8 (Term 1) is zero and the whole hypergradient is its Term 2,

    Term 2 = E_tau[ U(tau) * sum_h grad_phi log pi_{theta*(phi)}(a_h | s_h) ]      (sum over tau's steps only)

(the reference segment's probability is not a function of phi). One teacher label y of the pair (tau, tau_ref)
(1: tau preferred, 1/2: a tie) has E[y | tau] = U(tau), so f = y per pair is an unbiased one-sample estimate of
the utility and, plugged into the Term 2 estimators of :mod:`parl_deep.preference.hypergrad` with
``PairBatch(policy_sides=(0,))``, of Term 2 (:func:`win_rate_objective`). A skipped pair (a B-Pref teacher's
skip) has no label and is left out: the estimate is then of the win rate on the kept pairs.

References (``win_rate_reference``), drawn from the replay buffer by global step:

* ``"random"``: segments of the first phase's random-action transitions (global steps < ``sac.seed_steps``): a
  uniform-random policy, parl_core's default reference;
* ``"previous"``: segments of the ``W`` steps before the current window (global steps in [now - 2W, now - W),
  ``W`` = ``query_window``): the data the policy of the previous iteration collected, a frozen earlier stage of the
  same policy; a run's first session may have none (then it asks no reference pairs).

``upper`` may be a weighted sum of per-pair objectives, ``"likelihood+0.5*win-rate"``: G = sum_i w_i G_i, and
since eq. 8 is linear in the utility, both terms of the hypergradient are the same weighted sums
(:class:`parl_core.WeightedObjective`). :func:`parse_upper` reads such a string.
"""
from __future__ import annotations

import math
import re
from typing import Callable

import numpy as np
import torch

from parl_deep.fields import ConfigError
from parl_deep.preference.hypergrad import UPPER_OBJECTIVES, PairBatch
from parl_deep.replay import SegmentIndex

__all__ = ["REFERENCES", "REFERENCE_TERMS", "UPPER_TERMS", "win_rate_objective", "parse_upper", "reference_bounds",
           "sample_reference_rows", "reference_problems"]

REFERENCES = ("random", "previous")


def win_rate_objective(reward: torch.nn.Module, batch: PairBatch) -> torch.Tensor:
    """f per pair (B,): the label y (1: segment 0, the current policy's, preferred to the reference segment 1),
    the one-sample estimate of U(tau0) = P(tau0 beats tau_ref). It does not depend on phi (no gradient): its
    Term 1 is zero, and its Term 2 needs the batch's ``policy_sides == (0,)``."""
    return batch.labels.detach()


# the per-pair objectives ``upper`` can name, and which of them is scored against a reference (one-sided)
win_rate_objective.depends_on_reward = False  # type: ignore[attr-defined]  (hypergrad.estimate: Term 1 = 0)
UPPER_TERMS: dict[str, Callable[[torch.nn.Module, PairBatch], torch.Tensor]] = {
    **UPPER_OBJECTIVES, "win-rate": win_rate_objective}
REFERENCE_TERMS = frozenset({"win-rate"})

_TERM = re.compile(r"\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z][a-z-]*)\s*")


def parse_upper(spec: str, where: str = "") -> tuple[tuple[str, float], ...]:
    """``((name, weight), ...)`` of an ``upper`` string: one name of UPPER_TERMS (weight 1) or a sum of terms
    ``[weight*]name`` joined by ``+``, e.g. ``"likelihood+0.5*win-rate"``; weights are positive finite decimals and
    each name appears once. Raises ConfigError (a ValueError) naming the field (prefixed by ``where``)."""
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{where}upper must be one of {', '.join(UPPER_TERMS)} or a weighted sum of them such "
                          f"as 'likelihood+0.5*win-rate', got {spec!r}: {why}")

    if not isinstance(spec, str) or not spec.strip():
        raise bad("empty")
    terms: list[tuple[str, float]] = []
    for part in re.split(r"(?<![0-9][eE])\+", spec):  # a "+" after a digit and e is an exponent
        m = _TERM.fullmatch(part)
        if m is None:
            raise bad(f"cannot read the term {part.strip()!r} (expected [weight*]name)")
        name, w = m["name"], float(m["w"]) if m["w"] is not None else 1.0
        if name not in UPPER_TERMS:
            raise bad(f"unknown objective {name!r}")
        if not (math.isfinite(w) and w > 0):
            raise bad(f"the weight of {name} must be a positive number, got {m['w']}")
        if name in (n for n, _ in terms):
            raise bad(f"{name} appears twice")
        terms.append((name, w))
    return tuple(terms)


def reference_bounds(reference: str, now: int, window: int, seed_steps: int) -> dict[str, int | None]:
    """``window``/``until`` of :meth:`SegmentIndex.sample_rows` for the reference segments at global step
    ``now``: random, t < seed_steps; previous, now - 2 window <= t < now - window."""
    if reference == "random":
        return {"window": None, "until": int(seed_steps)}
    if reference == "previous":
        return {"window": 2 * int(window), "until": int(now) - int(window)}
    raise ValueError(f"win_rate_reference must be one of {', '.join(REFERENCES)}, got {reference!r}")


def sample_reference_rows(index: SegmentIndex, rng: np.random.Generator, n: int, length: int, size: int,
                          now: int, *, window: int, reference: str,
                          seed_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Buffer rows ``(n, length)`` of ``n`` pairs (a segment of the current policy's last ``window`` steps, a
    reference segment), each side uniform over its valid starts; raises
    :class:`parl_deep.replay.NotEnoughData` when either side has none."""
    rows0 = index.sample_rows(rng, n, length, size, now, window)
    rows1 = index.sample_rows(rng, n, length, size, now, **reference_bounds(reference, now, window, seed_steps))
    return rows0, rows1


def reference_problems(reference: str, *, segment: int, stride: int, seed_steps: int, steps: int,
                       replay_capacity: int | None, query_window: int, first_session: int,
                       interval: int) -> list[str]:
    """What the run lacks for its reference, as sentences (empty: nothing): a complete segment spans
    ``(segment - 1) * stride + 1`` global steps (``stride`` = environments stepped together); the replay buffer
    holds ``replay_capacity`` transitions (None: the whole run); sessions happen at ``first_session`` and then every
    ``interval`` steps up to ``steps``."""
    span = (segment - 1) * stride + 1
    out = []
    if reference == "random":
        if seed_steps < span:
            out.append(f"win_rate_reference = 'random' draws reference segments from the sac.seed_steps = "
                       f"{seed_steps} random-action steps, which hold no complete {segment}-step segment "
                       f"(it needs sac.seed_steps >= {span})")
        if replay_capacity is not None and replay_capacity < steps:
            out.append(f"win_rate_reference = 'random' needs the random-action steps for the whole run, but the "
                       f"ring buffer (replay_capacity = {replay_capacity} < steps = {steps}) would overwrite them; "
                       f"use replay_capacity = null, or win_rate_reference = 'previous'")
    elif reference == "previous":
        if replay_capacity is not None and replay_capacity < 2 * query_window:
            out.append(f"win_rate_reference = 'previous' needs the 2 * query_window = {2 * query_window} most "
                       f"recent transitions, but replay_capacity = {replay_capacity} keeps fewer")
        sessions = range(first_session, steps + 1, max(interval, 1))
        if first_session <= steps and not any(s - query_window >= span for s in sessions):
            out.append(f"win_rate_reference = 'previous' needs a complete segment in the query_window = "
                       f"{query_window} steps before the current window, and no feedback session of this run "
                       f"(from step {first_session}, every {interval}, up to steps = {steps}) has one")
    else:
        out.append(f"win_rate_reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    return out
