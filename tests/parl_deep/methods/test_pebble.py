"""PEBBLE / PEBBLE+SURF methods: kNN intrinsic reward, running std, segment sampling, 3,000-step runs with
feedback, relabelling and checkpoint/resume, exact resume, CLI options."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from parl_deep.checkpoint import CHECKPOINT_NAME, load_checkpoint
from parl_deep.config import DeviceUnavailableError
from parl_deep.methods import get_method
from parl_deep.methods.pebble import PEBBLEConfig, PEBBLEMethod
from parl_deep.methods.pebble_surf import PEBBLESURFConfig, PEBBLESURFMethod
from parl_deep.nets import RunningMeanStd
from parl_deep.preference.presets import task_preset
from parl_deep.training import TrainLoop, resume, train

from ..fixtures import feedback_cfg, loaded_loop, rows, strip_time, train_cli


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="unknown pebble option"):
        PEBBLEConfig.from_dict({"tau": 0.9})  # a SURF option is not a PEBBLE option
    with pytest.raises(ValueError, match="max_feedback must be a positive integer"):
        PEBBLEConfig.from_dict({"max_feedback": 0})
    with pytest.raises(ValueError, match="teacher must be one of oracle, noisy"):
        PEBBLEConfig.from_dict({"teacher": "sloppy"})
    with pytest.raises(ValueError, match="feed_type"):
        PEBBLEConfig.from_dict({"feed_type": "random"})
    with pytest.raises(ValueError, match="query_window"):
        PEBBLEConfig.from_dict({"query_window": 10})
    with pytest.raises(ValueError, match="crop range"):
        PEBBLESURFConfig.from_dict({"crop_max": 61})
    assert PEBBLESURFConfig.from_dict({}).stored_length == 60
    assert PEBBLEConfig.from_dict({}).reward_device == "cpu"
    assert PEBBLEConfig.from_dict({"reward_device": "cuda"}).reward_device == "cuda"
    for bad in ("gpu", "cuda:x", "CUDA", 0):
        with pytest.raises(ValueError, match="reward_device"):
            PEBBLESURFConfig.from_dict({"reward_device": bad})
    assert PEBBLEConfig.from_dict({"reward_device": "cuda:1"}).reward_device == "cuda:1"
    # walker: published batch per budget; door-open: PEBBLE's budget; SURF's walker settings
    assert task_preset("dmc:walker-walk", "pebble", 100)["reward_batch"] == 10
    assert task_preset("dmc:walker-walk", "pebble")["max_feedback"] == 1000
    assert task_preset("dmc:walker-walk", "pebble")["reward_batch"] == 100
    assert task_preset("metaworld:door-open", "pebble")["max_feedback"] == 4000
    surf = PEBBLESURFMethod.resolve_config({"max_feedback": 100}, "dmc:walker-walk")
    assert (surf["mu"], surf["inv_label_ratio"], surf["tau"], surf["reward_batch"]) == (4, 100, 0.99, 10)
    # the user's options win over the preset; resolving is idempotent
    mine = PEBBLEMethod.resolve_config({"reward_batch": 7, "num_interact": 123}, "metaworld:door-open")
    assert (mine["reward_batch"], mine["num_interact"], mine["num_unsup_steps"]) == (7, 123, 9000)
    assert PEBBLEMethod.resolve_config(mine, "metaworld:door-open") == mine
    assert get_method("pebble") is PEBBLEMethod and get_method("pebble-surf") is PEBBLESURFMethod


# ------------------------------------------------------------------------------------------ real runs
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_reward_device_without_cuda_is_a_clear_error(tmp_path):
    cfg = feedback_cfg("metaworld:door-open", "pebble-surf", steps=1000, reward_device="cuda")
    with pytest.raises(DeviceUnavailableError, match="torch sees no CUDA devices"):
        TrainLoop(cfg, tmp_path)
    with pytest.raises(DeviceUnavailableError, match="reward_device='cuda:1'"):
        PEBBLESURFMethod.check_runtime({"reward_device": "cuda:1"})
    PEBBLESURFMethod.check_runtime({"reward_device": "cpu"})  # no error


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_parl_train_with_a_missing_gpu_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "r"
    rc, err = train_cli(["--env", "metaworld:door-open", "--method", "pebble-surf", "--steps", "100",
                   "--set", "method_config.reward_device=cuda", "--out", str(out)], capsys)
    assert rc == 2 and "reward_device='cuda' but torch sees no CUDA devices" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_resuming_a_gpu_run_without_a_gpu_fails_before_touching_the_run(tmp_path):
    cfg = feedback_cfg("metaworld:door-open", "pebble", steps=600)
    train(cfg, tmp_path, progress=False, stop_after=1, allow_short=True)
    cj = tmp_path / "config.json"
    d = json.loads(cj.read_text())
    d["method_config"]["reward_device"] = "cuda"
    cj.write_text(json.dumps(d))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(DeviceUnavailableError, match="torch sees no CUDA devices"):
        resume(tmp_path, steps=900, progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # steps not rewritten


def test_checkpoints_without_reward_device_still_load_and_other_options_must_match(tmp_path):
    cfg = feedback_cfg("metaworld:door-open", "pebble", steps=1000)
    sd = TrainLoop(cfg, tmp_path / "a").state_dict()
    del sd["method"]["config"]["reward_device"]  # as written before the option existed
    TrainLoop(cfg, tmp_path / "b").load_state_dict(sd)
    sd["method"]["config"]["reward_batch"] += 1
    with pytest.raises(ValueError, match="pebble config mismatch"):
        TrainLoop(cfg, tmp_path / "c").load_state_dict(sd)


@pytest.mark.smoke
@pytest.mark.parametrize("method", ["pebble", "pebble-surf"])
@pytest.mark.parametrize("env,ep_len", [("dmc:walker-walk", 1000), ("metaworld:door-open", 500)])
def test_3000_step_run_spends_labels_relabels_and_resumes(tmp_path, env, ep_len, method):
    cfg = feedback_cfg(env, method)
    surf = method == "pebble-surf"
    # "crash" at 2500: the session at 2000 is logged, the last checkpoint is at 1500
    train(cfg, tmp_path, progress=False, stop_after=2500)
    assert [int(r["step"]) for r in rows(tmp_path / "feedback.csv")] == [1000, 2000]
    ck = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ck["step"] == 1500 and ck["method"]["counters"]["queries"] == 10
    loop = loaded_loop(cfg, tmp_path)  # the state a resumed run starts from equals the checkpoint's
    m = loop.method
    assert (m.counters["queries"], m.counters["labels"], m.sessions, len(m.dataset)) == (10, 10, 1, 10)
    np.testing.assert_array_equal(m.dataset.seg0, ck["method"]["dataset"]["seg0"])
    np.testing.assert_array_equal(m.dataset.labels, ck["method"]["dataset"]["labels"])
    for k, v in ck["method"]["reward_model"]["members"].items():
        assert torch.equal(m.reward_model.members.state_dict()[k], v), k
    assert m.teacher.state_dict()["rng"] == ck["method"]["teacher"]["rng"]

    resume(tmp_path, progress=False)
    fb = rows(tmp_path / "feedback.csv")  # the row of the session redone at 2000 is not duplicated
    assert [int(r["step"]) for r in fb] == [1000, 2000]
    assert [int(r["queries"]) for r in fb] == [10, 15]  # budget 15 in batches of 10: 10 + 5, then spent
    assert [int(r["query_window"]) for r in fb] == [1000, 2000]
    assert all(0.0 <= float(r["train_acc"]) <= 1.0 and int(r["relabelled"]) == int(r["step"]) for r in fb)
    assert np.isfinite(float(fb[1]["fresh_acc"])) and np.isfinite(float(fb[1]["reward_corr"]))
    assert fb[0]["feed_type"] == "uniform" and fb[1]["feed_type"] == "disagreement"

    loop = loaded_loop(cfg, tmp_path)
    m, buf = loop.method, loop.buffer
    assert loop.step == 3000 and buf.size == 3000
    k = m.counters
    assert (k["queries"], k["labels"], k["sessions"], k["reward_updates"], k["relabels"]) == (15, 15, 2, 2, 2)
    assert len(m.dataset) == 15 and m.dataset.seg0.shape[1:] == (60 if surf else 50, buf.obs_dim + buf.act_dim)
    if surf:
        assert len(m.unlabelled) == 2 * 15 and m.unlabelled.seg0.shape[1] == 60
    # SAC learns on the learned reward: every stored reward is the final r_hat (rows 0..1999 relabelled after
    # the last update, rows 2000..2999 stored with it)
    r_hat = m.reward_model.r_hat(buf.column("obs"), buf.column("act"))
    np.testing.assert_allclose(buf.column("reward")[:, 0], r_hat, rtol=1e-5, atol=1e-6)
    assert not np.allclose(buf.column("reward")[:, 0], buf.column("env_reward")[:, 0])
    # per-row episode / time bookkeeping, and segments drawn inside one episode of the recent window
    np.testing.assert_array_equal(m.index.t_index[:3000], np.arange(3000))
    np.testing.assert_array_equal(m.index.ep_id[:3000], np.arange(3000) // ep_len)
    r = m.sample_segment_rows(16, 70, window=600)
    assert r.shape == (16, 70) and (r >= 3000 - 600).all() and (np.diff(r, axis=1) == 1).all()
    assert (m.index.ep_id[r] == m.index.ep_id[r[:, :1]]).all()
    np.testing.assert_array_equal(buf.true_rewards(r), buf.column("env_reward")[r, 0])
    assert len(m.teacher.state_dict()["episode_rates"]) == min(10, 3000 // ep_len)  # observe_episode called
    ck = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert ck["agent"]["num_updates"] == 3000 - 500 + 10  # + reset_update after the first session


def test_unsupervised_phase_learns_from_the_knn_intrinsic_reward(tmp_path):
    cfg = feedback_cfg("dmc:walker-walk", "pebble", steps=5000, num_unsup_steps=4000)
    cfg.sac.seed_steps = 100
    loop = TrainLoop(cfg, tmp_path)
    loop.run(progress=False, stop_after=300)
    m = loop.method
    assert m.sessions == 0 and m.ent_stats.count == 200 * 64  # one batch of 64 per update since step 101
    rms_before = RunningMeanStd()
    rms_before.load_state_dict(m.ent_stats.state_dict())
    batch = loop.buffer.sample(64, np.random.default_rng(1))
    r = m.batch_reward(batch, loop).numpy()[:, 0]
    ref = loop.buffer.column("next_obs").astype(np.float64)
    q = batch[3].numpy().astype(np.float64)
    d = np.sort(np.sqrt(((q[:, None, :] - ref[None]) ** 2).sum(-1)), axis=1)[:, 5]
    rms_before.update(d)
    np.testing.assert_allclose(r, d / rms_before.std, rtol=1e-4, atol=1e-5)
    m.counters["sessions"] = 1
    assert m.batch_reward(batch, loop) is None  # after the first session: the stored (learned) reward


def test_resume_continues_the_same_pebble_run(tmp_path):
    """Interrupted after a session and a mid-episode checkpoint, then resumed == never interrupted."""
    cfg = feedback_cfg("dmc:walker-walk", "pebble", steps=1400, num_unsup_steps=300, num_interact=400,
                    max_feedback=30)
    cfg.sac.seed_steps, cfg.checkpoint_every, cfg.eval_every = 300, 800, 700
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg, a, progress=False)
    train(cfg, b, progress=False, stop_after=1100)  # sessions at 600, 1000; checkpoint at 800
    assert load_checkpoint(b / CHECKPOINT_NAME)["step"] == 800
    resume(b, progress=False)
    for name in ("eval.csv", "episodes.csv", "feedback.csv"):
        assert strip_time(rows(a / name)) == strip_time(rows(b / name)), name
    assert [int(r["queries"]) for r in rows(a / "feedback.csv")] == [10, 20, 30]
    ca, cb = load_checkpoint(a / CHECKPOINT_NAME), load_checkpoint(b / CHECKPOINT_NAME)
    for k in ca["agent"]["actor"]:
        assert torch.equal(ca["agent"]["actor"][k], cb["agent"]["actor"][k]), k
    for k in ca["method"]["reward_model"]["members"]:
        assert torch.equal(ca["method"]["reward_model"]["members"][k], cb["method"]["reward_model"]["members"][k])
    np.testing.assert_array_equal(ca["method"]["dataset"]["seg0"], cb["method"]["dataset"]["seg0"])
    np.testing.assert_array_equal(ca["buffer"]["data"], cb["buffer"]["data"])
    assert ca["method"]["counters"] == cb["method"]["counters"]
    assert ca["method"]["teacher"]["rng"] == cb["method"]["teacher"]["rng"]




def test_a_query_window_without_a_whole_segment_of_one_environment_is_refused():
    """With 4 environments a 50-step segment of one of them spans 197 global steps: a 100-step window would never
    find a pair (feedback would silently never happen), so the run is refused; 197 is accepted."""
    from parl_deep.config import ConfigError
    from parl_deep.training import check_config

    from ..fixtures import feedback_cfg

    for method in ("pebble", "a-parl"):
        cfg = feedback_cfg("dmc:walker-walk", method, steps=3000, query_window=100)
        cfg.num_envs, cfg.eval_every, cfg.checkpoint_every = 4, 1500, 1500
        with pytest.raises(ConfigError, match="query_window = 100 holds no 50-step segment .* spans 197 steps"):
            check_config(cfg)
        cfg.method_config["query_window"] = 197
        check_config(cfg)
        cfg.num_envs, cfg.method_config["query_window"] = 1, 100
        check_config(cfg)
