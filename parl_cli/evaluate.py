"""``parl eval RUN_DIR``: the trained policy of a run, evaluated over N deterministic episodes, and a video.

Examples::

    parl eval runs/walker-pebble --episodes 10
    parl eval runs/door-aparl --episodes 5 --video door.mp4      # needs MUJOCO_GL=osmesa (libosmesa6) or egl
"""
from __future__ import annotations

import argparse
import os

from parl_cli.common import fail

GL_HINT = ("rendering MuJoCo needs an OpenGL backend: install Debian's libosmesa6 (apt-get install libosmesa6) "
           "and run with MUJOCO_GL=osmesa, or use MUJOCO_GL=egl on a machine with a GPU")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("run_dir", help="a parl train run directory (config.json and a checkpoint)")
    parser.add_argument("--episodes", type=int, default=10, help="deterministic episodes to run [default: 10]")
    parser.add_argument("--seed", type=int, default=None,
                        help="environment seed [default: the run's evaluation seed, its seed + 10000]")
    parser.add_argument("--max-steps", type=int, default=None, help="cut episodes at this many steps [default: none]")
    parser.add_argument("--video", metavar="OUT.mp4", default=None, help="write every frame to this mp4")


def run(args: argparse.Namespace) -> int:
    if args.episodes <= 0:
        return fail("eval", f"--episodes must be a positive integer, got {args.episodes}")
    if args.max_steps is not None and args.max_steps <= 0:
        return fail("eval", f"--max-steps must be a positive integer, got {args.max_steps}")
    if args.video:
        if not str(args.video).endswith(".mp4"):
            return fail("eval", f"--video must name an .mp4 file, got {args.video!r}")
        if not os.path.isdir(os.path.dirname(os.path.abspath(args.video))):
            return fail("eval", f"--video: the folder of {args.video!r} does not exist")
        from parl_deep.evaluation import gl_backend

        backend = gl_backend()
        if backend is None:
            return fail("eval", f"--video: no OpenGL backend found; {GL_HINT}")
        os.environ["MUJOCO_GL"] = backend  # before the simulators are imported
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    from parl_deep.config import ConfigError
    from parl_deep.envs import UnknownEnvironmentError
    from parl_deep.evaluation import evaluate, load_policy

    try:
        policy = load_policy(args.run_dir)
        res = evaluate(policy, episodes=args.episodes, seed=args.seed, max_steps=args.max_steps, video=args.video)
    except (ConfigError, UnknownEnvironmentError) as exc:
        return fail("eval", str(exc))
    cfg = policy.config
    print(f"{cfg.env} {cfg.method} seed {cfg.seed}, checkpoint at step {policy.step}: return "
          f"{res['return_mean']:.1f} +- {res['return_std']:.1f} over {res['episodes']} episodes")
    print("returns: " + ", ".join(f"{r:.1f}" for r in res["returns"]))
    if "success_rate" in res:
        print(f"success rate: {res['success_rate']:.2f}")
    if args.video:
        print(f"wrote {res['video']} ({res['frames']} frames)")
    return 0
