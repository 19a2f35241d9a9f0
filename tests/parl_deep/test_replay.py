"""Replay buffer and segment index: sampling, relabelling, round trips, and segments that never straddle an
episode boundary in a wrapped ring buffer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parl_deep.replay import ReplayBuffer, SegmentIndex, valid_segment_starts


def test_replay_buffer_sample_relabel_and_round_trip():
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(3, 2, capacity=10)
    for i in range(13):  # wraps around
        buf.add(np.full(3, i), np.full(2, -i / 20), float(i), float(i), i == 12, np.full(3, i + 1))
    assert len(buf) == 10 and buf.ptr == 3
    o, a, r, no, nd = buf.sample(50, rng)
    assert o.shape == (50, 3) and a.shape == (50, 2) and r.shape == (50, 1) and no.shape == (50, 3)
    assert torch.all(no[:, 0] == o[:, 0] + 1) and torch.all(r[:, 0] == o[:, 0])
    assert torch.all(nd[:, 0] == (o[:, 0] != 12).float())
    assert set(o[:, 0].int().tolist()) <= set(range(3, 13))
    buf.relabel(lambda obs, act, nobs: obs[:, 0] * 2)
    np.testing.assert_array_equal(buf.column("reward")[:, 0], buf.column("obs")[:, 0] * 2)
    np.testing.assert_array_equal(buf.column("env_reward")[:, 0], buf.column("obs")[:, 0])
    b2 = ReplayBuffer(3, 2, capacity=10)
    b2.load_state_dict(buf.state_dict())
    np.testing.assert_array_equal(b2.data, buf.data)
    assert (b2.ptr, b2.size) == (buf.ptr, buf.size)


def _ring(ep_lengths, capacity, rotate):
    """ep_id / t arrays of a ring buffer holding the last ``capacity`` of the concatenated episodes."""
    ep = np.concatenate([np.full(n, i) for i, n in enumerate(ep_lengths)])
    t = np.arange(ep.size)
    ep, t = ep[-capacity:], t[-capacity:]
    # in a ring buffer the oldest row sits at the write pointer: rotate so that row order != time order
    r = rotate % ep.size
    return np.roll(ep, r), np.roll(t, r), int(t[-1]) + 1


@settings(max_examples=60, deadline=None)
@given(ep_lengths=st.lists(st.integers(1, 40), min_size=1, max_size=12), capacity=st.integers(1, 300),
       rotate=st.integers(0, 299), length=st.integers(1, 25), window=st.none() | st.integers(1, 200))
def test_segment_starts_never_straddle_episodes_and_respect_the_window(ep_lengths, capacity, rotate, length, window):
    ep, t, now = _ring(ep_lengths, capacity, rotate)
    got = valid_segment_starts(ep, t, length, now, window)
    expected = []
    for i in range(ep.size - length + 1):
        rr = np.arange(i, i + length)
        same_episode = (ep[rr] == ep[i]).all()
        consecutive = (np.diff(t[rr]) == 1).all()
        recent = window is None or (t[rr] >= now - window).all()
        if same_episode and consecutive and recent:
            expected.append(i)
    np.testing.assert_array_equal(got, expected)


def test_continuation_rows_stop_at_the_episode_end_and_at_overwritten_rows():
    idx = SegmentIndex(10)
    for step in range(14):  # episodes of 5 steps; a ring of 10 rows: steps 10..13 overwrite rows 0..3
        idx.record(step % 10, step // 5, step)
    rows, mask = idx.continuation_rows(np.array([[5], [8], [0]]), 4)
    # row 5 holds step 5 (episode 1: steps 5..9): 4 steps continue; row 8 holds step 8: only 8, 9 remain
    # before episode 2; row 0 holds step 10 (episode 2: 10..14), whose next steps 11, 12, 13 sit in rows 1..3
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(rows, [[5, 6, 7, 8], [8, 9, 8, 8], [0, 1, 2, 3]])
    rows, mask = idx.continuation_rows(np.array([[3]]), 3)  # step 13, the last written: nothing follows
    np.testing.assert_array_equal(mask, [[1, 0, 0]])


def test_segment_index_round_trips_and_samples_inside_episodes():
    idx = SegmentIndex(20)
    for step in range(20):
        idx.record(step, step // 7, step)
    sd = idx.state_dict(20)
    other = SegmentIndex(20)
    other.load_state_dict(sd)
    np.testing.assert_array_equal(other.ep_id, idx.ep_id)
    r = other.sample_rows(np.random.default_rng(0), 50, 5, 20, now=20)
    assert (idx.ep_id[r] == idx.ep_id[r[:, :1]]).all() and (np.diff(r, axis=1) == 1).all()


def test_a_buffer_that_never_wrapped_grows_into_a_longer_run():
    small = ReplayBuffer(3, 1, 4)
    for i in range(4):
        small.add(np.full(3, i), np.zeros(1), float(i), float(i), False, np.full(3, i + 1))
    big = ReplayBuffer(3, 1, 6)
    with pytest.raises(ValueError, match="does not match"):
        big.load_state_dict(small.state_dict())
    big.load_state_dict(small.state_dict(), grow=True)
    assert (big.size, big.ptr) == (4, 4)
    big.add(np.full(3, 9), np.zeros(1), 9.0, 9.0, False, np.full(3, 10))
    np.testing.assert_array_equal(big.column("reward")[:, 0], [0, 1, 2, 3, 9])


def _interleaved_index(lengths_per_env: list[list[int]], capacity: int):
    """Record the transitions of len(lengths_per_env) environments stepped together, handled in copy order (as
    parl_deep.collection does), into a SegmentIndex; returns it, the rows written and, per row, (copy, episode,
    step in episode) as the oracle."""
    n = len(lengths_per_env)
    index = SegmentIndex(capacity, stride=n)
    queues = [[(e, t) for e, length in enumerate(lens) for t in range(length)] for lens in lengths_per_env]
    steps = min(len(q) for q in queues)  # lockstep: every copy moves once per vector step
    truth = {}
    for v in range(steps):
        for k in range(n):
            g = v * n + k
            e, t = queues[k][v]
            episode_id = k * 1000 + e  # any unique id per (copy, episode)
            index.record(g % capacity, episode_id, g)
            truth[g % capacity] = (k, e, t, g)
    return index, min(steps * n, capacity), truth


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 4), lens=st.lists(st.integers(1, 9), min_size=4, max_size=12), length=st.integers(1, 5),
       wraps=st.integers(1, 3))
def test_strided_segments_are_exactly_one_copys_consecutive_steps(n, lens, length, wraps):
    """Enumeration oracle: a start is valid iff its ``length`` rows, ``n`` apart, hold consecutive steps of one
    episode of one copy (the layout of ``num_envs = n`` environments stepped together, ring buffer included)."""
    per_env = [lens[k::n] or [1] for k in range(n)]
    total = min(sum(x) for x in per_env) * n
    capacity = max(n, (total // wraps) // n * n)
    index, size, truth = _interleaved_index(per_env, capacity)
    starts = set(valid_segment_starts(index.ep_id[:size], index.t_index[:size], length, stride=n).tolist())
    expected = set()
    for s in range(size):
        rows = [s + j * n for j in range(length)]
        if rows[-1] >= size:
            continue
        cells = [truth[r] for r in rows]
        if all(c[:2] == cells[0][:2] and c[2] == cells[0][2] + j and c[3] == cells[0][3] + j * n
               for j, c in enumerate(cells)):
            expected.add(s)
    assert starts == expected
    if expected:
        rng = np.random.default_rng(0)
        rows = index.sample_rows(rng, 20, length, size, now=10**9)
        for r in rows:
            k, e, t, _ = truth[r[0]]
            assert [truth[x][:3] for x in r] == [(k, e, t + j) for j in range(length)]
        cont, mask = index.continuation_rows(rows[:, :1], length + 3)
        for r, m in zip(cont, mask):
            k, e, t, _ = truth[r[0]]
            assert all(truth[x][:3] == (k, e, t + j) for j, x in enumerate(r[m]))  # true continuations only
            j = int(m.sum())
            assert m[:j].all()  # true up to the first step that is not the continuation ...
            nxt = (r[0] + j * n) % capacity
            assert j == length + 3 or truth.get(nxt, (None,) * 4)[:3] != (k, e, t + j)  # ... and that one is not


def test_segment_index_refuses_a_capacity_that_is_not_a_multiple_of_the_stride():
    with pytest.raises(ValueError, match="multiple of stride 4"):
        SegmentIndex(10, stride=4)
