"""Loading a trained policy and evaluating it: the numbers equal the run loop's own evaluation of the same policy
on the same environment; the GL backend is found or named."""
from __future__ import annotations

import pytest

from parl_deep import evaluate, load_policy, train
from parl_deep.config import ConfigError
from parl_deep.evaluation import gl_backend

from .fixtures import oracle_cfg, rows


@pytest.mark.parametrize("env", ["dmc:walker-walk", "metaworld:door-open"])
def test_evaluate_reproduces_the_runs_final_evaluation(tmp_path, env):
    cfg = oracle_cfg(env, steps=600)
    cfg.eval_every = cfg.checkpoint_every = 600  # one evaluation, at the end, on a fresh evaluation env
    cfg.eval_episodes, cfg.eval_max_steps = 2, 40
    train(cfg, tmp_path, progress=False)
    policy = load_policy(tmp_path)
    assert policy.step == 600 and policy.config == cfg
    res = evaluate(policy, episodes=2, max_steps=40)
    last = rows(tmp_path / "eval.csv")[-1]
    assert f"{res['return_mean']:.6g}" == last["return_mean"] and f"{res['return_std']:.6g}" == last["return_std"]
    assert len(res["returns"]) == 2 and ("success_rate" in res) == env.startswith("metaworld")
    other = evaluate(policy, episodes=2, max_steps=40, seed=123)  # another environment seed: other episodes
    assert other["returns"] != res["returns"]


def test_load_policy_needs_a_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        load_policy(tmp_path)


def test_gl_backend_follows_mujoco_gl_and_the_installed_libraries(monkeypatch):
    import parl_deep.evaluation as ev

    monkeypatch.setenv("MUJOCO_GL", "egl")
    assert gl_backend() == "egl"
    monkeypatch.setenv("MUJOCO_GL", "disabled")
    monkeypatch.setattr(ev.ctypes.util, "find_library", lambda name: None)
    assert gl_backend() is None
    monkeypatch.setattr(ev.ctypes.util, "find_library", lambda name: "libOSMesa.so.8" if name == "OSMesa" else None)
    assert gl_backend() == "osmesa"
