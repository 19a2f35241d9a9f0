"""``gym:<id>``: any registered gymnasium environment with Box spaces, behind the project's interface."""
from __future__ import annotations

import importlib.util
import os

os.environ["MUJOCO_GL"] = "disabled"

import gymnasium as gym
import numpy as np
import pytest

from parl_deep.envs import (UnknownEnvironmentError, UnsupportedEnvironmentError, check_env_name, make_env,
                            valid_env_names)


def test_check_env_name_reads_the_registry_without_building(monkeypatch):
    from parl_deep.envs import gym_suite

    def refuse(*a, **k):
        raise AssertionError("check_env_name must not build an environment")

    monkeypatch.setattr(gym_suite.gym, "make", refuse)
    assert check_env_name("gym:Pendulum-v1") == ("gym", "Pendulum-v1")
    assert check_env_name("gym:HalfCheetah-v5") == ("gym", "HalfCheetah-v5")
    assert "gym:Pendulum-v1" in valid_env_names()
    with pytest.raises(UnknownEnvironmentError, match="registered gymnasium ids are .*Pendulum-v1") as exc:
        check_env_name("gym:Pendulum-v7")
    assert "tested ones: dmc:walker-walk" in str(exc.value)
    with pytest.raises(UnsupportedEnvironmentError, match="max_episode_steps"):  # Blackjack has no time limit
        check_env_name("gym:Blackjack-v1")


@pytest.mark.parametrize("name,space", [("gym:CartPole-v1", "action space Discrete(2)"),
                                        ("gym:FrozenLake-v1", "observation space Discrete(16)")])
def test_a_space_that_is_not_a_box_is_refused_in_one_line(name, space):
    with pytest.raises(UnsupportedEnvironmentError) as exc:
        make_env(name, 0)
    assert isinstance(exc.value, ValueError) and space in str(exc.value) and "\n" not in str(exc.value)


def test_pendulum_is_gymnasiums_pendulum_with_unit_actions():
    """The first reset is gymnasium's ``reset(seed=seed)``; action a in [-1, 1] is torque 2a (bounds [-2, 2])."""
    env = make_env("gym:Pendulum-v1", seed=3)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert env.observation_space == gym.spaces.Box(np.array([-1, -1, -8], np.float32),
                                                   np.array([1, 1, 8], np.float32))
    assert env.max_episode_steps == 200 and env.spec.max_episode_steps == 200 and suite_is_gym(env)
    raw = gym.make("Pendulum-v1")
    np.testing.assert_array_equal(env.reset()[0], raw.reset(seed=3)[0])
    rng = np.random.default_rng(0)
    for t in range(1, 201):
        a = rng.uniform(-1, 1, 1).astype(np.float32)
        obs, r, term, trunc, _ = env.step(a)
        o2, r2, term2, trunc2, _ = raw.step((2.0 * a.astype(np.float64)).astype(np.float32))
        np.testing.assert_array_equal(obs, o2)
        assert (r, term, trunc) == (float(r2), term2, trunc2) and trunc == (t == 200) and not term
    with pytest.raises(RuntimeError, match="reset"):
        env.step(a)


def suite_is_gym(env) -> bool:
    return env.spec.id.startswith("gym:") and env.spec.entry_point == "parl_deep.envs:make_env"


def test_a_missing_simulator_dependency_is_one_line():
    if importlib.util.find_spec("Box2D") is not None:
        pytest.skip("Box2D is installed here")
    with pytest.raises(UnsupportedEnvironmentError, match="cannot be built here") as exc:
        make_env("gym:LunarLanderContinuous-v3", 0)
    assert "\n" not in str(exc.value)
