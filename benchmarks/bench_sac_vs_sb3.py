"""Throughput of parl_deep's SAC against Stable-Baselines3's SAC at identical settings, in one process.

Both agents use the same environment (parl_deep.make_env), MLP sizes (hidden x depth, for actor and both critics),
batch size, one gradient step per environment step, target update every ``--target-every`` updates, learned
temperature initialised at 0.1, Adam, and one torch thread. Two numbers each:

* updates/s: gradient updates only, from a replay buffer already filled with ``--warmup`` random transitions;
* env steps/s (with updates): the full training loop (act, step the simulator, store, update) after the
  ``--warmup`` random steps (the random phase is not timed).

The machine is shared, so the implementations are measured in short interleaved blocks (``--rounds``),
and rates are printed per second of process CPU time (what this process actually got; robust to other jobs)
and per second of wall-clock time (ratio of totals, and median of the per-round ratios). Both run on
``--device`` (cpu, cuda, cuda:N). ``--compile MODE`` adds a third contestant: ours with ``sac.compile = MODE``
(torch.compile of the losses; ``reduce-overhead`` adds CUDA graphs on a GPU), after its compilation.

``--num-envs 1,4,8`` then measures our loop's environment steps per second with that many environments stepped
together (gymnasium's vector API, sync and subprocess modes), with SAC updates (one per transition, the same
update-to-data ratio) and without (the random-action phase: simulator, storing and bookkeeping only), each as a
ratio to one environment in the same run.

CleanRL is not a contestant: its PyPI package (cleanrl 0.4.8, 2021) imports the old ``gym`` API,
``gym.wrappers.Monitor`` and ``pybullet_envs``, which do not install beside gymnasium 1.4 and torch 2.13, and its
current single-file SAC is only on GitHub (not reachable from the machines that run this).

Usage (not a test; takes ~3-6 minutes with the defaults)::

    OMP_NUM_THREADS=1 MUJOCO_GL=disabled .venv/bin/python benchmarks/bench_sac_vs_sb3.py --preset cpu
    OMP_NUM_THREADS=1 MUJOCO_GL=disabled .venv/bin/python benchmarks/bench_sac_vs_sb3.py --preset paper \
        --device cuda --compile reduce-overhead --num-envs 1,4,8
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

os.environ.setdefault("MUJOCO_GL", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from parl_deep import make_env  # noqa: E402
from parl_deep.agents.sac import COMPILE_MODES, preset  # noqa: E402
from parl_deep.training import TrainConfig, TrainLoop  # noqa: E402


class Ours:
    """parl_deep's real run loop (TrainLoop) on a temporary run directory."""

    def __init__(self, env_name: str, sac_cfg, warmup: int, total: int, device: str = "cpu", num_envs: int = 1,
                 vector_mode: str = "sync"):
        from pathlib import Path

        self._tmp = tempfile.TemporaryDirectory()
        n = num_envs
        cfg = TrainConfig(env=env_name, steps=-(-total // n) * n, eval_every=n * 10**9, eval_episodes=1,
                          eval_max_steps=1, checkpoint_every=n * 10**9, sac=sac_cfg, device=device, num_envs=n,
                          vector_mode=vector_mode)
        cfg.sac.seed_steps = warmup
        self.loop = TrainLoop(cfg, Path(self._tmp.name))
        self.loop.run(progress=False, stop_after=warmup)  # random actions, fills the buffer
        self.batch = sac_cfg.batch_size

    def updates(self, n: int) -> None:
        agent, buf, rng = self.loop.agent, self.loop.buffer, self.loop.rng
        for _ in range(n):
            agent.update(*(t.to(agent.device) for t in buf.sample(self.batch, rng)))

    def steps(self, n: int) -> None:
        self.loop.run(progress=False, stop_after=self.loop.step + n)


class SB3:
    """Stable-Baselines3's SAC with the same sizes, batch, update ratio, target interval and temperature."""

    def __init__(self, env_name: str, sac_cfg, warmup: int, total: int, device: str = "cpu"):
        from stable_baselines3 import SAC as SB3SAC

        self.model = SB3SAC(
            "MlpPolicy", make_env(env_name, 0), learning_rate=sac_cfg.actor_lr, buffer_size=total + 10,
            learning_starts=warmup, batch_size=sac_cfg.batch_size, tau=sac_cfg.critic_tau, gamma=sac_cfg.discount,
            train_freq=1, gradient_steps=1, ent_coef=f"auto_{sac_cfg.init_temperature}",
            target_update_interval=sac_cfg.critic_target_update_freq, seed=0, device=device, verbose=0,
            policy_kwargs=dict(net_arch=[sac_cfg.hidden_dim] * sac_cfg.hidden_depth, n_critics=2),
        )
        self.model.learn(total_timesteps=warmup)  # random actions only (learning_starts), fills the buffer
        self.batch = sac_cfg.batch_size

    def updates(self, n: int) -> None:
        self.model.train(gradient_steps=n, batch_size=self.batch)

    def steps(self, n: int) -> None:
        self.model.learn(total_timesteps=n, reset_num_timesteps=False)


def interleaved(agents: dict, rounds: int, block_updates: int, block_steps: int) -> dict[str, dict[str, float]]:
    """Measure every contestant in short interleaved blocks; per contestant: updates/s and env steps/s per second
    of process CPU time and of wall-clock time."""
    res = {k: {"t_u": 0.0, "t_s": 0.0, "c_u": 0.0, "c_s": 0.0} for k in agents}
    for r in range(rounds):
        line = []
        for kind, n in (("u", block_updates), ("s", block_steps)):
            for name, a in agents.items():
                if n == 0:
                    continue
                t, c = time.perf_counter(), time.process_time()
                a.updates(n) if kind == "u" else a.steps(n)
                dt = time.perf_counter() - t
                res[name][f"c_{kind}"] += time.process_time() - c
                res[name][f"t_{kind}"] += dt
                line.append(f"{name} {kind} {n / dt:6.1f}/s")
        print(f"  round {r}: " + " | ".join(line), flush=True)
    n_u, n_s = rounds * block_updates, rounds * block_steps
    return {k: {"updates_cpu": n_u / max(v["c_u"], 1e-9), "steps_cpu": n_s / max(v["c_s"], 1e-9),
                "updates_wall": n_u / max(v["t_u"], 1e-9), "steps_wall": n_s / max(v["t_s"], 1e-9)}
            for k, v in res.items()}


def versus_sb3(args, sac_config) -> None:
    total = args.warmup + args.rounds * args.block_steps + 10
    agents = {"ours": Ours(args.env, sac_config(), args.warmup, total, args.device),
              "sb3": SB3(args.env, sac_config(), args.warmup, total, args.device)}
    if args.compile != "off":
        agents["ours-compiled"] = Ours(args.env, dataclasses.replace(sac_config(), compile=args.compile),
                                       args.warmup, total, args.device)
    for name, a in agents.items():  # warm-up (allocations, first backward; compilation)
        t = time.perf_counter()
        a.updates(10)
        print(f"  warm-up {name}: {time.perf_counter() - t:.1f} s", flush=True)
    rates = interleaved(agents, args.rounds, args.block_updates, args.block_steps)
    base = rates["sb3"]
    for clock in ("cpu", "wall"):
        print(f"total over {args.rounds} interleaved rounds, per second of {'process CPU' if clock == 'cpu' else 'wall-clock'} time:")
        for name, r in rates.items():
            print(f"  {name:14s} updates/s {r['updates_' + clock]:7.1f} ({r['updates_' + clock] / base['updates_' + clock]:.2f}x SB3)"
                  f"   env steps/s with updates {r['steps_' + clock]:7.1f} ({r['steps_' + clock] / base['steps_' + clock]:.2f}x SB3)")


def vector_envs(args, sac_config) -> None:
    counts = [int(x) for x in args.num_envs.split(",")]
    ref, base = None, f"{counts[0]} env" + ("s" if counts[0] > 1 else "") + " (sync)"  # the ratios' reference
    for mode in ("sync", "subprocess"):
        agents = {}
        for n in counts:
            if mode == "subprocess" and n == 1:
                continue
            warm = -(-args.warmup // n) * n
            total = warm + args.rounds * (args.block_steps + args.block_random) + 10 * n
            agents[f"{n} env" + ("s" if n > 1 else "")] = Ours(args.env, sac_config(), warm, total, args.device, n, mode)
        print(f"num_envs, {mode} mode: env steps/s with updates (1 per transition)", flush=True)
        with_updates = interleaved(agents, args.rounds, 0, args.block_steps)
        for a in agents.values():  # the rest without updates: back to the random phase
            a.loop.cfg.sac.seed_steps = 10**12
        print(f"num_envs, {mode} mode: env steps/s without updates (random actions)", flush=True)
        no_updates = interleaved(agents, args.rounds, 0, args.block_random)
        for name in agents:
            w, r = with_updates[name]["steps_wall"], no_updates[name]["steps_wall"]
            ref = ref or (w, r)
            print(f"  {mode:10s} {name:7s} with updates {w:7.1f}/s ({w / ref[0]:.2f}x {base})   "
                  f"collection only {r:8.1f}/s ({r / ref[1]:.2f}x {base})")
        for a in agents.values():
            a.loop.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="dmc:walker-walk")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    p.add_argument("--device", default="cpu", help="torch device of every contestant: cpu, cuda, cuda:N")
    p.add_argument("--compile", default="off", choices=COMPILE_MODES, help="also measure ours with sac.compile = "
                   "this mode (off: do not)")
    p.add_argument("--num-envs", default="", help="comma list of environment counts for the vector-env section "
                   "(e.g. 1,4,8; empty: skip it)")
    p.add_argument("--skip-sb3", action="store_true", help="only the vector-env section")
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=8, help="interleaved measurement rounds")
    p.add_argument("--block-updates", type=int, default=100, help="gradient updates per round and implementation")
    p.add_argument("--block-steps", type=int, default=200, help="env steps (with updates) per round and implementation")
    p.add_argument("--block-random", type=int, default=2000, help="env steps without updates per round (vector-env section)")
    p.add_argument("--hidden", type=int, default=None, help="override the preset's hidden width (both agents)")
    p.add_argument("--depth", type=int, default=None, help="override the preset's hidden depth (both agents)")
    p.add_argument("--batch", type=int, default=None, help="override the preset's batch size (both agents)")
    args = p.parse_args()

    def sac_config():
        c = preset(args.preset, args.env)
        over = {k: v for k, v in (("hidden_dim", args.hidden), ("hidden_depth", args.depth),
                                  ("batch_size", args.batch)) if v is not None}
        return dataclasses.replace(c, **over)

    sac_cfg = sac_config()
    print(f"env={args.env} preset={args.preset} device={args.device}: MLP {sac_cfg.hidden_dim}x{sac_cfg.hidden_depth}, "
          f"batch {sac_cfg.batch_size}, 1 update/step, target update every {sac_cfg.critic_target_update_freq}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}", flush=True)
    if not args.skip_sb3:
        versus_sb3(args, sac_config)
    if args.num_envs:
        vector_envs(args, sac_config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
