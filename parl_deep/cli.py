"""``parl train``: oracle SAC, PEBBLE and PEBBLE+SURF (later A-PARL) on DMC and Meta-World.

Examples::

    parl train --env dmc:walker-walk --method oracle --steps 100000 --seed 0 --preset cpu --out runs/walker-oracle
    parl train --resume runs/walker-oracle            # continue after a crash / kill
    parl train --env metaworld:door-open --steps 2000 --set sac.seed_steps=500 --set eval_every=1000 --out runs/t
    parl train --env dmc:walker-walk --method pebble --teacher noisy --max-feedback 1000 --out runs/walker-pebble
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("MUJOCO_GL", "disabled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", help="dmc:<domain>-<task> or metaworld:<task> (e.g. dmc:walker-walk)")
    parser.add_argument("--method", default="oracle", help="training method (default: oracle)")
    parser.add_argument("--steps", type=int, help="total environment steps (default 100000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="cpu", help="SAC hyperparameters: 'paper' (PEBBLE) or 'cpu' (default)")
    parser.add_argument("--out", help="run directory (e.g. runs/walker-oracle)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--eval-every", type=int, default=None, help="evaluate every E steps (default 10000)")
    parser.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (default 10)")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every C steps (default 10000)")
    parser.add_argument("--metaworld-fixed-goal", action="store_true",
                        help="Meta-World: keep one object/goal position instead of re-drawing it every episode")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set sac.batch_size=512 --set eval_max_steps=100 "
                             "(VALUE is parsed as JSON when possible)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    fb = parser.add_argument_group(
        "preference feedback (methods pebble, pebble-surf; defaults: the task's published preset, "
        "see parl_deep.pebble; any other option via --set method_config.KEY=VALUE)")
    for flag, typ, help_ in FEEDBACK_OPTIONS:
        fb.add_argument(flag, type=typ, default=None, help=help_)


def _window(text: str):
    return None if text.lower() in ("none", "all") else int(text)


# command-line flag -> method_config key (only set when given)
FEEDBACK_OPTIONS = [
    ("--teacher", str, "simulated teacher preset: oracle, noisy, mistake, skip, myopic, equal (default oracle)"),
    ("--max-feedback", int, "total number of preference queries (label budget)"),
    ("--reward-batch", int, "queries per feedback session"),
    ("--num-interact", int, "environment steps between feedback sessions"),
    ("--num-unsup-steps", int, "steps of unsupervised (state-entropy) pre-training after the random steps"),
    ("--segment", int, "segment length (steps) shown to the teacher"),
    ("--feed-type", str, "query selection: uniform, disagreement, entropy, kcenter"),
    ("--reward-update", int, "maximum reward-model epochs per session"),
    ("--query-window", _window, "sample segments from the N most recent transitions ('all': whole buffer; "
                                "a-parl: 'all' means num_interact)"),
    ("--hypergrad", str, "a-parl's Term 2 estimator: soft-bellman (default), ift-cg, neumann, none"),
    ("--term2-step", float, "a-parl: step size of the ascent step along Term 2 after each reward round (default 0.01)"),
]


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _apply_overrides(d: dict, overrides: list[str], ConfigError) -> dict:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        target = d
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(target.get(p), dict):
                raise ConfigError(f"--set {key}: {p!r} is not a config section")
            target = target[p]
        if parts[-1] not in target and parts[:-1] != ["method_config"]:
            raise ConfigError(f"--set {key}: unknown config field; valid here: {', '.join(sorted(target))}")
        target[parts[-1]] = _parse_value(value)
    return d


def run(args: argparse.Namespace) -> int:
    from parl_deep.envs import UnknownEnvironmentError
    from parl_deep.methods import DeviceUnavailableError
    from parl_deep.train import ConfigError, TrainConfig, resume, train

    def fail(msg: str) -> int:
        print(f"parl train: error: {msg}", file=sys.stderr)
        return 2

    try:
        if args.resume:
            if args.env or args.out:
                return fail("--resume takes the run directory only (its config.json fixes env, method, ...)")
            given = [f for f, _t, _h in FEEDBACK_OPTIONS if getattr(args, f[2:].replace("-", "_")) is not None]
            if given:
                return fail(f"--resume takes the run directory only; {', '.join(given)} are fixed by its config.json")
            if args.steps is not None and args.steps <= 0:
                return fail(f"--steps must be a positive integer, got {args.steps}")
            summary = resume(args.resume, steps=args.steps, progress=not args.no_progress)
        else:
            if not args.env:
                return fail("--env is required (e.g. --env dmc:walker-walk), or use --resume RUN_DIR")
            if not args.out:
                return fail("--out is required (the run directory, e.g. runs/walker-oracle)")
            if args.steps is not None and args.steps <= 0:
                return fail(f"--steps must be a positive integer, got {args.steps}")
            from parl_deep.envs import make_env  # noqa: F401  (validate the name before building anything)
            from parl_deep.methods import METHODS
            from parl_deep.sac import PRESETS

            if args.method not in METHODS:
                return fail(f"unknown method {args.method!r}; valid methods: {', '.join(sorted(METHODS))}")
            if args.preset not in PRESETS:
                return fail(f"unknown preset {args.preset!r}; valid presets: {', '.join(PRESETS)}")
            kwargs = {"method": args.method, "seed": args.seed,
                      "metaworld_random_goal": not args.metaworld_fixed_goal}
            for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every"):
                v = getattr(args, name)
                if v is not None:
                    kwargs[name] = v
            cfg = TrainConfig.make(args.env, preset_name=args.preset, **kwargs)
            for flag, _typ, _help in FEEDBACK_OPTIONS:
                v = getattr(args, flag[2:].replace("-", "_"))
                if v is not None:
                    cfg.method_config[flag[2:].replace("-", "_")] = v
            d = _apply_overrides(cfg.to_dict(), args.set, ConfigError)
            cfg = TrainConfig.from_dict(d)
            _check_env_name(cfg.env)
            cfg.validate()  # bad method options fail here, before the presets are resolved
            if cfg.method_config and not hasattr(METHODS[cfg.method], "validate_config"):
                return fail(f"method {cfg.method!r} takes no options, got {sorted(cfg.method_config)}")
            try:  # fill in the method's presets so that config.json records every setting
                cfg.method_config = METHODS[cfg.method].resolve_config(cfg.method_config, cfg.env)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            summary = train(cfg, args.out, progress=not args.no_progress)
    except (ConfigError, UnknownEnvironmentError, DeviceUnavailableError) as exc:
        return fail(str(exc))
    except TypeError as exc:  # e.g. --set with a value of the wrong type
        return fail(f"bad configuration: {exc}")
    last = summary.get("last_eval") or {}
    msg = f"done: {summary['step']} steps in {summary['wall_time_s']:.0f}s"
    if last:
        msg += f"; last eval return {last['return_mean']:.1f}"
        if "success_rate" in last:
            msg += f", success {last['success_rate']:.2f}"
    print(msg)
    return 0


def _check_env_name(name: str) -> None:
    """Fail fast with the list of valid names (without building the environment)."""
    from parl_deep import envs

    if not isinstance(name, str) or ":" not in name:
        raise envs._unknown(name, "missing the 'dmc:' or 'metaworld:' prefix")
    suite_name, task = name.split(":", 1)
    if suite_name == "dmc":
        valid = envs._dmc_all()
    elif suite_name == "metaworld":
        valid = envs._metaworld_all()
    else:
        raise envs._unknown(name, f"unknown suite {suite_name!r} (use 'dmc' or 'metaworld')")
    if task not in valid:
        raise envs._unknown(name, f"valid {suite_name} tasks are {', '.join(valid)}")
