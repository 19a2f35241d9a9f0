"""``parl train``: one-line errors for bad input (nothing written), option mapping, and a --help built from the
config dataclasses."""
from __future__ import annotations

import json

import pytest

from parl_deep.config import ConfigError, TrainConfig
from parl_deep.methods.pebble import PEBBLEMethod
from parl_deep.training import train

from ..parl_deep.fixtures import oracle_cfg, rows, train_cli


# ------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("args,needle", [
    (["--method", "oracle", "--teacher", "noisy"], "method 'oracle' takes no options"),
    (["--method", "oracle", "--max-feedback", "100"], "method 'oracle' takes no options"),
    (["--method", "pebble", "--set", "method_config.bogus=1"], "unknown pebble option(s) ['bogus']"),
    (["--method", "pebble", "--teacher", "sloppy"], "teacher must be one of oracle, noisy, mistake, skip, myopic, equal or module:Class, got 'sloppy'"),
    (["--method", "pebble", "--feed-type", "random"], "feed_type must be one of"),
    (["--method", "pebble-surf", "--set", "method_config.tau=0.2"], "pebble-surf: tau must be in [0.5, 1.0], got 0.2"),
])
def test_bad_feedback_options_give_a_clear_error(tmp_path, capsys, args, needle):
    rc, err = train_cli(["--env", "dmc:walker-walk", *args, "--out", str(tmp_path / "r")], capsys)
    assert rc == 2
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_cli_maps_feedback_options_and_saves_the_resolved_preset(tmp_path, capsys):
    out = tmp_path / "r"
    rc, err = train_cli(["--env", "dmc:walker-walk", "--method", "pebble", "--teacher", "noisy", "--max-feedback", "100",
                   "--query-window", "5000", "--steps", "2", "--allow-short", "--eval-episodes", "1", "--set", "eval_max_steps=1",
                   "--set", "sac.seed_steps=1", "--out", str(out)], capsys)
    assert rc == 0, err
    mc = json.loads((out / "config.json").read_text())["method_config"]
    assert mc == PEBBLEMethod.resolve_config({"teacher": "noisy", "max_feedback": 100, "query_window": 5000},
                                             "dmc:walker-walk")
    assert (mc["teacher"], mc["max_feedback"], mc["reward_batch"], mc["query_window"]) == ("noisy", 100, 10, 5000)
    rc, err = train_cli(["--resume", str(out), "--teacher", "oracle"], capsys)
    assert rc == 2 and "--teacher" in err


@pytest.mark.parametrize("args,needle", [
    (["--env", "dmc:walker-walk", "--preset", "gpu"], "valid presets: paper, cpu"),
    (["--env", "dmc:walker-walk", "--method", "pebble-ish"], "valid methods: a-parl, oracle, pebble, pebble-surf"),
    (["--env", "dmc:walker-walk", "--steps", "0"], "--steps must be a positive integer"),
    (["--env", "dmc:walker-walk", "--steps", "-5"], "--steps must be a positive integer"),
    (["--env", "dmc:walker-fly"], "dmc:walker-walk"),
    (["--env", "dmc:walker-walk", "--set", "sac.hidden=3"], "unknown config field"),
    (["--env", "dmc:walker-walk", "--eval-every", "0"], "eval_every must be a positive integer"),
])
def test_bad_input_gives_a_clear_error(tmp_path, capsys, args, needle):
    rc, err = train_cli([*args, "--out", str(tmp_path / "r")], capsys)
    assert rc == 2
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_out_dir_with_a_different_runs_config_is_refused(tmp_path, capsys):
    cfg = oracle_cfg("dmc:walker-walk")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    rc, err = train_cli(["--env", "dmc:walker-walk", "--seed", "1", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "different run" in err and "seed" in err
    other = TrainConfig.make("dmc:walker-walk", seed=1)
    with pytest.raises(ConfigError, match="different run"):
        train(other, tmp_path, progress=False)


def test_resume_of_a_non_run_dir_is_refused(tmp_path, capsys):
    rc, err = train_cli(["--resume", str(tmp_path)], capsys)
    assert rc == 2 and "no config.json" in err


def test_help_lists_every_choice_and_the_field_docstrings(capsys):
    from parl_cli.main import main
    from parl_deep.fields import field_docs
    from parl_deep.methods.aparl import APARLConfig

    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for choice in ("a-parl|oracle|pebble|pebble-surf", "paper|cpu", "soft-bellman|ift-cg|neumann|none",
                   "oracle|noisy|mistake|skip|myopic|equal", "uniform|disagreement|entropy|kcenter"):
        assert choice in out, choice
    for name, doc in field_docs(APARLConfig).items():  # every option of every method, with its docstring
        assert " ".join(doc.split()) in out, name
    assert "sac.batch_size = 256" in out and "--term2-step" in out


def _snapshot(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()} if d.exists() else None


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "seed must be a non-negative integer, got -1"),
    (["--set", "sac.init_temperature=0"], "sac.init_temperature must be a positive number, got 0"),
    (["--set", "sac.batch_size=abc"], "sac.batch_size must be an integer, got 'abc'"),
    (["--set", "sac.hidden_dim=1.5"], "sac.hidden_dim must be an integer, got 1.5"),
    (["--set", "sac.discount=1.5"], "sac.discount must be in (0.0, 1.0], got 1.5"),
    (["--steps", "2000"], "steps = 2000 ends before SAC's first update (after sac.seed_steps = 5000"),
    (["--steps", "6000", "--method", "a-parl"], "ends before the first feedback session"),
    (["--restart"], "--restart goes with --resume"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, needle):
    rc, err = train_cli(["--env", "metaworld:door-open", *args, "--out", str(tmp_path / "r")], capsys)
    assert rc == 2 and needle in err, err
    assert err.startswith("parl train: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_short_run_runs_when_allowed(tmp_path, capsys):
    rc, err = train_cli(["--env", "dmc:walker-walk", "--steps", "20", "--allow-short", "--eval-episodes", "1",
                         "--set", "eval_max_steps=5", "--out", str(tmp_path / "r")], capsys)
    assert rc == 0, err
    assert (tmp_path / "r" / "checkpoint.pt").exists()


def test_resume_without_a_checkpoint_says_so_and_restarts_only_when_asked(tmp_path, capsys):
    cfg = oracle_cfg("dmc:walker-walk", steps=20)
    cfg.eval_every = cfg.checkpoint_every = 10
    cfg.sac.seed_steps = 5
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "episodes.csv").write_text("step,episode\n")  # as a kill before the first checkpoint leaves it
    before = _snapshot(run)
    rc, err = train_cli(["--resume", str(run)], capsys)
    assert rc == 2 and "has no checkpoint yet" in err and "--restart" in err and err.count("\n") == 1
    assert _snapshot(run) == before
    rc, err = train_cli(["--resume", str(run), "--restart"], capsys)
    assert rc == 0, err
    assert (run / "checkpoint.pt").exists()


@pytest.mark.parametrize("damage", [b"", b"\x00" * 100, b"not a zip file at all", "truncate"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_or_fails_in_one_line(tmp_path, capsys, damage):
    cfg = oracle_cfg("dmc:walker-walk", steps=40)
    cfg.eval_every = cfg.checkpoint_every = 10
    cfg.sac.seed_steps = 5
    run = tmp_path / "r"
    train(cfg, run, progress=False, stop_after=20)  # checkpoints at 10 and 20
    ck, prev = run / "checkpoint.pt", run / "checkpoint.prev.pt"
    assert prev.exists()
    good = ck.read_bytes()
    ck.write_bytes(good[: len(good) // 2] if damage == "truncate" else damage)
    rc, err = train_cli(["--resume", str(run)], capsys)
    assert rc == 0 and "resuming from checkpoint.prev.pt (step 10)" in err, err
    ck.write_bytes(b"garbage")
    prev.write_bytes(b"garbage")
    before = _snapshot(run)
    rc, err = train_cli(["--resume", str(run)], capsys)
    assert rc == 2 and "no readable checkpoint" in err and err.count("\n") == 1 and "Traceback" not in err
    assert _snapshot(run) == before


def test_a_missing_optional_dependency_names_the_extra(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['gymnasium'] = None; from parl_cli.main import main; "
            f"sys.exit(main(['train', '--env', 'dmc:walker-walk', '--out', {str(tmp_path / 'r')!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("parl train: error: ") and "'gymnasium'" in out.stderr
    assert "EXTRAS=deep" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_cuda_without_cuda_is_one_line_and_writes_nothing(tmp_path, capsys):
    rc, err = train_cli(["--env", "dmc:walker-walk", "--device", "cuda", "--out", str(tmp_path / "r")], capsys)
    assert rc == 2 and "device='cuda' but torch sees no CUDA devices" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    rc, err = train_cli(["--env", "dmc:walker-walk", "--device", "tpu", "--out", str(tmp_path / "r")], capsys)
    assert rc == 2 and "device must be 'cpu', 'cuda' or 'cuda:N'" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_a_cuda_run_resumes_here_only_with_device_cpu(tmp_path, capsys):
    cfg = oracle_cfg("dmc:walker-walk", steps=40)
    cfg.eval_every = cfg.checkpoint_every = 10
    cfg.sac.seed_steps = 5
    run = tmp_path / "r"
    train(cfg, run, progress=False, stop_after=20)
    cj = run / "config.json"
    d = json.loads(cj.read_text())
    d["device"] = "cuda"  # as written on a GPU machine
    cj.write_text(json.dumps(d))
    before = _snapshot(run)
    rc, err = train_cli(["--resume", str(run)], capsys)
    assert rc == 2 and "resume it on this machine with --device cpu" in err and err.count("\n") == 1
    assert _snapshot(run) == before
    rc, err = train_cli(["--resume", str(run), "--device", "cpu"], capsys)
    assert rc == 0, err
    assert json.loads(cj.read_text())["device"] == "cpu"
    assert [int(r["step"]) for r in rows(run / "eval.csv")] == [10, 20, 30, 40]
