"""Environment factory: every listed task constructs, steps, has the right shapes/bounds, and restores exactly.
(gymnasium's own checker and the ``gym:`` suite: tests/parl_deep/envs/.)"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "disabled")

import gymnasium as gym
import numpy as np
import pytest

from parl_deep import make_env
from parl_deep.envs import DMC_TASKS, METAWORLD_TASKS, UnknownEnvironmentError, check_env_name, suite_of

ALL = [f"dmc:{t}" for t in DMC_TASKS] + [f"metaworld:{t}" for t in METAWORLD_TASKS]
OBS_DIM = {"dmc:walker-walk": 24, "dmc:cheetah-run": 17, "dmc:quadruped-walk": 78}
ACT_DIM = {"dmc:walker-walk": 6, "dmc:cheetah-run": 6, "dmc:quadruped-walk": 12}


@pytest.mark.parametrize("name", ALL)
def test_constructs_steps_and_shapes(name):
    env = make_env(name, seed=0)
    is_mw = name.startswith("metaworld:")
    obs_dim = 39 if is_mw else OBS_DIM[name]
    act_dim = 4 if is_mw else ACT_DIM[name]
    assert isinstance(env.action_space, gym.spaces.Box)
    assert env.action_space.shape == (act_dim,) and env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    assert env.observation_space.shape == (obs_dim,) and env.observation_space.dtype == np.float32
    assert np.all(np.isfinite(env.observation_space.low)) and np.all(np.isfinite(env.observation_space.high))
    assert env.spec is not None and env.spec.id == name and env.spec.max_episode_steps == env.max_episode_steps
    assert env.max_episode_steps == (500 if is_mw else 1000)
    obs, info = env.reset()
    assert obs.shape == (obs_dim,) and obs.dtype == np.float32 and np.all(np.isfinite(obs))
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, act_dim).astype(np.float32))
        assert obs.shape == (obs_dim,) and obs.dtype == np.float32 and np.all(np.isfinite(obs))
        assert isinstance(r, float) and np.isfinite(r)
        assert term is False and trunc is False
        if is_mw:
            assert isinstance(info["success"], bool)
            assert 0.0 <= r <= 10.0
        else:
            assert 0.0 <= r <= 1.0


@pytest.mark.parametrize("name,length", [("dmc:walker-walk", 1000), ("metaworld:door-open", 500)])
def test_episode_length_is_a_truncation(name, length):
    env = make_env(name, seed=1)
    env.reset()
    a = np.zeros(env.action_space.shape, np.float32)
    for t in range(1, length + 1):
        _, _, term, trunc, _ = env.step(a)
        assert not term
        assert trunc == (t == length), t
    with pytest.raises(RuntimeError, match="reset"):
        env.step(a)


@pytest.mark.parametrize("name", ALL + ["gym:Pendulum-v1", "gym:MountainCarContinuous-v0", "gym:HalfCheetah-v5"])
@pytest.mark.parametrize("seeded", [False, True], ids=["built-seed", "reset-seed"])
def test_get_state_set_state_is_exact(name, seeded):
    """A fresh env restored from a mid-episode snapshot produces bit-identical transitions, also after a seeded
    reset (then the generator is gymnasium's PCG64, not dm_control's MT19937: restoring switches it). gym: tasks
    resume by seeded reset plus action replay."""
    env = make_env(name, seed=3)
    env.reset(seed=11 if seeded else None)
    rng = np.random.default_rng(1)
    for _ in range(30):
        env.step(rng.uniform(-1, 1, env.action_space.shape))
    snap = env.get_state()
    actions = rng.uniform(-1, 1, (25,) + env.action_space.shape).astype(np.float32)
    ref = [env.step(a) for a in actions]
    ref_next_reset = env.reset()[0]
    other = make_env(name, seed=99)  # a different seed: everything must come from the snapshot
    other.set_state(snap)
    got = [other.step(a) for a in actions]
    for (o1, r1, *_), (o2, r2, *_) in zip(ref, got):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2
    np.testing.assert_array_equal(ref_next_reset, other.reset()[0])  # the env's RNG was restored too


def test_seeding_is_deterministic_and_seed_dependent():
    a, b, c = make_env("dmc:walker-walk", 5), make_env("dmc:walker-walk", 5), make_env("dmc:walker-walk", 6)
    oa, ob, oc = a.reset()[0], b.reset()[0], c.reset()[0]
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(oa, oc)
    # gymnasium's reset(seed=...) re-seeds: same seed, same initial state
    np.testing.assert_array_equal(c.reset(seed=5)[0], a.reset(seed=5)[0])
    m1, m2 = make_env("metaworld:door-open", 1), make_env("metaworld:door-open", 2)
    np.testing.assert_array_equal(m1.reset(seed=7)[0], m2.reset(seed=7)[0])


def test_metaworld_goal_randomisation_is_explicit():
    goal = slice(36, 39)
    rand = make_env("metaworld:door-open", 0, random_goal=True)
    g1, g2 = rand.reset()[0][goal], rand.reset()[0][goal]
    assert not np.allclose(g1, g2), "random_goal=True must re-draw the goal every episode"
    fixed = make_env("metaworld:door-open", 0, random_goal=False)
    f1, f2 = fixed.reset()[0][goal], fixed.reset()[0][goal]
    np.testing.assert_array_equal(f1, f2)


def test_an_unseeded_reset_draws_what_dm_control_draws():
    """The wrapper's seeding leaves dm_control's own stream alone: episode after episode, the same initial
    states as the bare suite built with the same seed."""
    from dm_control import suite

    env, raw = make_env("dmc:walker-walk", 4), suite.load("walker", "walk", task_kwargs={"random": 4})
    for _ in range(3):
        ts = raw.reset()
        expect = np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in ts.observation.values()])
        np.testing.assert_array_equal(env.reset()[0], expect)


@pytest.mark.parametrize("bad", ["walker-walk", "dmc:walker-fly", "metaworld:door-close-please", "gym:Pendulum-v9",
                                 "atari:Pong-v5"])
def test_unknown_name_lists_valid_ones(bad):
    with pytest.raises(UnknownEnvironmentError) as exc:
        make_env(bad, 0)
    msg = str(exc.value)
    assert "\n" not in msg
    assert bad in msg and "dmc:walker-walk" in msg and "metaworld:door-open" in msg and "gym:Pendulum-v1" in msg


def test_suite_of_and_check_env_name():
    assert [suite_of(n) for n in ("dmc:walker-walk", "metaworld:door-open", "gym:Pendulum-v1", "x:y", "z")] == [
        "dmc", "metaworld", "gym", None, None]
    assert check_env_name("gym:Pendulum-v1") == ("gym", "Pendulum-v1")
    assert check_env_name("metaworld:door-open") == ("metaworld", "door-open")
