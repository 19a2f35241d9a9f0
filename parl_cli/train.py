"""``parl train``: one run of oracle SAC, PEBBLE, PEBBLE+SURF or A-PARL on DeepMind Control or Meta-World.

The options come from the config dataclasses themselves (their field docstrings, defaults and choices):
``TrainConfig`` (:mod:`parl_deep.config`), ``SACConfig`` (:mod:`parl_deep.agents.sac`) and each method's options
class (``config_cls`` of the methods in :mod:`parl_deep.methods`).
"""
from __future__ import annotations

import argparse
import dataclasses
import os

from parl_cli.common import add_field_flags, apply_overrides, describe_fields, fail, flag_dest

os.environ.setdefault("MUJOCO_GL", "disabled")

EXAMPLES = """\
examples:
  parl train --env dmc:walker-walk --method oracle --steps 100000 --seed 0 --preset cpu --out runs/walker
  parl train --resume runs/walker                          # continue after a crash or kill -9
  parl train --env metaworld:door-open --steps 2000 --set sac.seed_steps=500 --set eval_every=1000 --out runs/t
  parl train --env dmc:walker-walk --method pebble --teacher noisy --max-feedback 1000 --out runs/walker-pebble
  parl train --env dmc:walker-walk --method a-parl --hypergrad ift-cg --out runs/walker-aparl
"""


def _method_classes() -> dict:
    from parl_deep.methods import get_method, method_names

    return {name: get_method(name) for name in method_names()}


def _option_classes(methods: dict) -> list[type]:
    """The distinct option dataclasses of the registered methods, most specific first."""
    seen: list[type] = []
    for cls in methods.values():
        if cls.config_cls is not None and cls.config_cls not in seen:
            seen.append(cls.config_cls)
    return sorted(seen, key=lambda c: -len(c.__mro__))


def _own_fields(cls: type, base: type | None) -> tuple[str, ...]:
    """Names of the fields of ``base`` that ``cls`` inherits unchanged (same default)."""
    if base is None:
        return ()
    ours = {f.name: f.default for f in dataclasses.fields(cls)}
    return tuple(f.name for f in dataclasses.fields(base) if ours.get(f.name, f.default) == f.default)


def _epilog(methods: dict) -> str:
    from parl_deep.agents.sac import SACConfig
    from parl_deep.config import TrainConfig

    parts = [EXAMPLES, "methods and their options (any option: --set method_config.KEY=VALUE; defaults are\n"
                       "overridden by the task's published preset, see parl_deep.preference.presets):"]
    option_classes = {m.config_cls for m in methods.values()}
    for name, cls in methods.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        parts.append(f"\n{name}: {doc[0] if doc else ''}")
        if cls.config_cls is None:
            parts.append("  (no options)")
            continue
        base = next((c for c in cls.config_cls.__mro__[1:] if c in option_classes), None)
        if base is not None:
            parts.append(f"  the options of {base.method_name()}, plus:")
        parts.append(describe_fields(cls.config_cls, "", exclude=_own_fields(cls.config_cls, base)))
    parts.append("\nrun settings (--set KEY=VALUE):")
    parts.append(describe_fields(TrainConfig, "", exclude=("env", "method", "sac", "method_config")))
    parts.append("\nSAC hyperparameters (--set sac.KEY=VALUE; defaults before the --preset is applied):")
    parts.append(describe_fields(SACConfig, "sac."))
    return "\n".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from parl_deep.agents.sac import PRESETS
    from parl_deep.config import TrainConfig

    methods = _method_classes()
    parser.epilog = _epilog(methods)
    parser.add_argument("--env", help="dmc:<domain>-<task>, metaworld:<task> or gym:<gymnasium id> (e.g. dmc:walker-walk, gym:Pendulum-v1)")
    parser.add_argument("--method", default="oracle", metavar="|".join(methods),
                        help="training method (see below) [default: oracle]")
    parser.add_argument("--preset", default="cpu", metavar="|".join(PRESETS),
                        help="SAC hyperparameters: 'paper' (PEBBLE's published ones) or 'cpu' (sized for a small "
                             "CPU machine) [default: cpu]")
    parser.add_argument("--out", help="run directory (e.g. runs/walker-oracle)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    run_opts = parser.add_argument_group("run settings")
    run_flags = add_field_flags(run_opts, TrainConfig)
    parser.add_argument("--metaworld-fixed-goal", action="store_true",
                        help="Meta-World: keep one object/goal position instead of re-drawing it every episode")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set sac.batch_size=512 --set eval_max_steps=100 "
                             "--set method_config.eval_pairs=0 (VALUE is parsed as JSON when possible)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--restart", action="store_true",
                        help="with --resume: start the run again from step 0 when it has no readable checkpoint")
    parser.add_argument("--allow-short", action="store_true",
                        help="run even if --steps ends before the method's first update or feedback session, or "
                             "before a first evaluation or checkpoint (refused otherwise)")
    fb = parser.add_argument_group("method options (every one per method below, with --set method_config.KEY=VALUE; "
                                   "the task's published preset overrides these defaults)")
    names: list[str] = []
    for cls in _option_classes(methods):
        names += add_field_flags(fb, cls, exclude=tuple(names))
    parser.set_defaults(_method_flags=names, _run_flags=run_flags)


def _given(args: argparse.Namespace, names: list[str]) -> dict:
    """The options among ``names`` given on the command line (the others are None)."""
    return {n: getattr(args, flag_dest(n)) for n in names if getattr(args, flag_dest(n)) is not None}


def _new_config(args: argparse.Namespace):
    from parl_deep.config import TrainConfig
    from parl_deep.envs import check_env_name
    from parl_deep.training import resolve_method_options

    kwargs = {"method": args.method, "metaworld_random_goal": not args.metaworld_fixed_goal,
              **_given(args, args._run_flags)}
    cfg = TrainConfig.make(args.env, preset_name=args.preset, **kwargs)
    cfg.method_config.update(_given(args, args._method_flags))
    cfg = TrainConfig.from_dict(apply_overrides(cfg.to_dict(), args.set))
    check_env_name(cfg.env)
    return resolve_method_options(cfg)  # config.json then records every setting


def run(args: argparse.Namespace) -> int:
    from parl_deep.config import ConfigError
    from parl_deep.envs import UnknownEnvironmentError
    from parl_deep.training import resume, train

    try:
        if args.resume:
            fixed = [n for n in args._run_flags if n not in ("steps", "device")] + args._method_flags
            given = [f"--{n.replace('_', '-')}" for n in _given(args, fixed)]
            if args.env or args.out or given or args.set:
                return fail("train", "--resume takes the run directory (and --steps, --device) only; "
                                     f"{', '.join(given) or '--env/--out/--set'} are fixed by its config.json")
            if args.steps is not None and args.steps <= 0:
                return fail("train", f"--steps must be a positive integer, got {args.steps}")
            summary = resume(args.resume, steps=args.steps, progress=not args.no_progress,
                             allow_short=args.allow_short, restart=args.restart, device=args.device)
        else:
            if args.restart:
                return fail("train", "--restart goes with --resume RUN_DIR")
            if not args.env:
                return fail("train", "--env is required (e.g. --env dmc:walker-walk), or use --resume RUN_DIR")
            if not args.out:
                return fail("train", "--out is required (the run directory, e.g. runs/walker-oracle)")
            if args.steps is not None and args.steps <= 0:
                return fail("train", f"--steps must be a positive integer, got {args.steps}")
            summary = train(_new_config(args), args.out, progress=not args.no_progress,
                            allow_short=args.allow_short)
    except (ConfigError, UnknownEnvironmentError) as exc:
        return fail("train", str(exc))
    last = summary.get("last_eval") or {}
    msg = f"done: {summary['step']} steps in {summary['wall_time_s']:.0f}s"
    if last:
        msg += f"; last eval return {last['return_mean']:.1f}"
        if "success_rate" in last:
            msg += f", success {last['success_rate']:.2f}"
    print(msg)
    return 0
