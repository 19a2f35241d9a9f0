"""``parl eval``: returns (and success on Meta-World) over N episodes, an mp4 of non-blank frames under osmesa,
and one-line errors."""
from __future__ import annotations

import ctypes.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from parl_deep import train

from ..parl_deep.fixtures import oracle_cfg


@pytest.fixture(scope="module")
def door_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("door")
    cfg = oracle_cfg("metaworld:door-open", steps=600)
    cfg.eval_every = cfg.checkpoint_every = 600
    train(cfg, run, progress=False)
    return run


def _eval(*args, env=None):
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "parl_cli.main", "eval", *args], capture_output=True, text=True,
                          timeout=600, env=full)


def test_eval_prints_returns_and_success(door_run):
    out = _eval(str(door_run), "--episodes", "2", "--max-steps", "30", env={"MUJOCO_GL": "disabled"})
    assert out.returncode == 0, out.stderr
    returns = [float(x) for x in re.search(r"^returns: (.*)$", out.stdout, re.M).group(1).split(",")]
    assert len(returns) == 2
    assert re.search(r"^success rate: [01]\.\d\d$", out.stdout, re.M)


@pytest.mark.skipif(not ctypes.util.find_library("OSMesa"), reason="needs Debian's libosmesa6 (scripts/setup.sh)")
def test_eval_writes_an_mp4_of_non_blank_frames_under_osmesa(door_run, tmp_path):
    import imageio.v2 as imageio

    video = tmp_path / "door.mp4"
    out = _eval(str(door_run), "--episodes", "1", "--max-steps", "20", "--video", str(video),
                env={"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"})
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "(21 frames)" in out.stdout  # the reset frame and one per step
    frames = np.stack([f for f in imageio.get_reader(str(video))])  # (list() asks for len: inf for ffmpeg)
    assert frames.shape[0] == 21 and frames.shape[-1] == 3
    assert frames.std() > 5 and frames[0].std() > 5  # a rendered scene, not a blank image
    assert not np.array_equal(frames[0], frames[-1])  # the arm moved


@pytest.mark.parametrize("args,needle", [
    (["--episodes", "0"], "--episodes must be a positive integer"),
    (["--video", "out.gif"], "--video must name an .mp4 file"),
    (["--video", "/no/such/folder/out.mp4"], "the folder of"),
])
def test_bad_input_is_one_line(door_run, args, needle):
    out = _eval(str(door_run), *args)
    assert out.returncode == 2 and out.stderr.startswith("parl eval: error: ") and needle in out.stderr
    assert out.stderr.count("\n") == 1


def test_no_gl_backend_is_one_line_saying_how_to_get_one(door_run, tmp_path, capsys, monkeypatch):
    import parl_deep.evaluation as ev
    from parl_cli.main import main

    monkeypatch.setenv("MUJOCO_GL", "disabled")
    monkeypatch.setattr(ev.ctypes.util, "find_library", lambda name: None)
    assert main(["eval", str(door_run), "--video", str(tmp_path / "v.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parl eval: error: --video: no OpenGL backend") and "libosmesa6" in err
    assert err.count("\n") == 1 and not (tmp_path / "v.mp4").exists()


def test_eval_of_a_directory_without_a_run(tmp_path):
    out = _eval(str(tmp_path))
    assert out.returncode == 2 and "not a run directory" in out.stderr and out.stderr.count("\n") == 1
