"""Throughput of parl_deep's SAC against Stable-Baselines3's SAC at identical settings, in one process.

Both agents use the same environment (parl_deep.make_env), MLP sizes (hidden x depth, for actor and both critics),
batch size, one gradient step per environment step, target update every ``--target-every`` updates, learned
temperature initialised at 0.1, Adam, and one torch thread. Two numbers each:

* updates/s: gradient updates only, from a replay buffer already filled with ``--warmup`` random transitions;
* env steps/s (with updates): the full training loop (act, step the simulator, store, update) after the
  ``--warmup`` random steps (the random phase is not timed).

The machine is shared, so the two implementations are measured in short interleaved blocks (``--rounds``),
and rates are printed per second of process CPU time (what this process actually got; robust to other jobs)
and per second of wall-clock time (ratio of totals, and median of the per-round ratios).

Usage (not a test; takes ~2-4 minutes with the defaults)::

    OMP_NUM_THREADS=1 MUJOCO_GL=disabled .venv/bin/python benchmarks/bench_sac_vs_sb3.py --preset cpu
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

import numpy as np
import torch

torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from parl_deep import make_env  # noqa: E402
from parl_deep.agents.sac import preset  # noqa: E402
from parl_deep.training import TrainConfig, TrainLoop  # noqa: E402


class Ours:
    """parl_deep's real run loop (TrainLoop) on a temporary run directory."""

    def __init__(self, env_name: str, sac_cfg, warmup: int, total: int):
        from pathlib import Path

        self._tmp = tempfile.TemporaryDirectory()
        cfg = TrainConfig(env=env_name, steps=total, eval_every=10**9, eval_episodes=1, eval_max_steps=1,
                          checkpoint_every=10**9, sac=sac_cfg)
        cfg.sac.seed_steps = warmup
        self.loop = TrainLoop(cfg, Path(self._tmp.name))
        self.loop.run(progress=False, stop_after=warmup)  # random actions, fills the buffer
        self.batch = sac_cfg.batch_size

    def updates(self, n: int) -> None:
        agent, buf, rng = self.loop.agent, self.loop.buffer, self.loop.rng
        for _ in range(n):
            agent.update(*buf.sample(self.batch, rng))

    def steps(self, n: int) -> None:
        self.loop.run(progress=False, stop_after=self.loop.step + n)


class SB3:
    """Stable-Baselines3's SAC with the same sizes, batch, update ratio, target interval and temperature."""

    def __init__(self, env_name: str, sac_cfg, warmup: int, total: int):
        from stable_baselines3 import SAC as SB3SAC

        self.model = SB3SAC(
            "MlpPolicy", make_env(env_name, 0), learning_rate=sac_cfg.actor_lr, buffer_size=total + 10,
            learning_starts=warmup, batch_size=sac_cfg.batch_size, tau=sac_cfg.critic_tau, gamma=sac_cfg.discount,
            train_freq=1, gradient_steps=1, ent_coef=f"auto_{sac_cfg.init_temperature}",
            target_update_interval=sac_cfg.critic_target_update_freq, seed=0, device="cpu", verbose=0,
            policy_kwargs=dict(net_arch=[sac_cfg.hidden_dim] * sac_cfg.hidden_depth, n_critics=2),
        )
        self.model.learn(total_timesteps=warmup)  # random actions only (learning_starts), fills the buffer
        self.batch = sac_cfg.batch_size

    def updates(self, n: int) -> None:
        self.model.train(gradient_steps=n, batch_size=self.batch)

    def steps(self, n: int) -> None:
        self.model.learn(total_timesteps=n, reset_num_timesteps=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="dmc:walker-walk")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    p.add_argument("--warmup", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=8, help="interleaved measurement rounds")
    p.add_argument("--block-updates", type=int, default=100, help="gradient updates per round and implementation")
    p.add_argument("--block-steps", type=int, default=200, help="env steps (with updates) per round and implementation")
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
    print(f"env={args.env} preset={args.preset}: MLP {sac_cfg.hidden_dim}x{sac_cfg.hidden_depth}, "
          f"batch {sac_cfg.batch_size}, 1 update/step, target update every {sac_cfg.critic_target_update_freq}, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    total = args.warmup + args.rounds * args.block_steps + 10
    agents = {"ours": Ours(args.env, sac_config(), args.warmup, total),
              "sb3": SB3(args.env, sac_config(), args.warmup, total)}
    for a in agents.values():  # warm-up (allocations, first backward)
        a.updates(10)
    # Interleave short blocks so that both implementations see the same (shared, noisy) machine.
    t_upd = {k: 0.0 for k in agents}
    t_stp = {k: 0.0 for k in agents}
    c_upd = {k: 0.0 for k in agents}  # process CPU time: robust to other jobs taking the cores
    c_stp = {k: 0.0 for k in agents}
    per_round = []
    for r in range(args.rounds):
        rr = {}
        for name, a in agents.items():
            t, c = time.perf_counter(), time.process_time()
            a.updates(args.block_updates)
            dt = time.perf_counter() - t
            c_upd[name] += time.process_time() - c
            t_upd[name] += dt
            rr[name + "_u"] = args.block_updates / dt
        for name, a in agents.items():
            t, c = time.perf_counter(), time.process_time()
            a.steps(args.block_steps)
            dt = time.perf_counter() - t
            c_stp[name] += time.process_time() - c
            t_stp[name] += dt
            rr[name + "_s"] = args.block_steps / dt
        per_round.append(rr)
        print(f"  round {r}: updates/s ours {rr['ours_u']:6.1f} SB3 {rr['sb3_u']:6.1f} | "
              f"env steps/s ours {rr['ours_s']:6.1f} SB3 {rr['sb3_s']:6.1f}", flush=True)
    n_u, n_s = args.rounds * args.block_updates, args.rounds * args.block_steps
    ou, su = n_u / t_upd["ours"], n_u / t_upd["sb3"]
    os_, ss = n_s / t_stp["ours"], n_s / t_stp["sb3"]
    med_u = float(np.median([r["ours_u"] / r["sb3_u"] for r in per_round]))
    med_s = float(np.median([r["ours_s"] / r["sb3_s"] for r in per_round]))
    cu_o, cu_s = n_u / c_upd["ours"], n_u / c_upd["sb3"]
    cs_o, cs_s = n_s / c_stp["ours"], n_s / c_stp["sb3"]
    print(f"total over {args.rounds} interleaved rounds, per second of process CPU time (robust to load):")
    print(f"  updates/s                 ours {cu_o:7.1f}   SB3 {cu_s:7.1f}   ratio {cu_o / cu_s:.2f}x")
    print(f"  env steps/s with updates  ours {cs_o:7.1f}   SB3 {cs_s:7.1f}   ratio {cs_o / cs_s:.2f}x")
    print(f"total over {args.rounds} interleaved rounds, per second of wall-clock time:")
    print(f"  updates/s                 ours {ou:7.1f}   SB3 {su:7.1f}   ratio {ou / su:.2f}x (median per round {med_u:.2f}x)")
    print(f"  env steps/s with updates  ours {os_:7.1f}   SB3 {ss:7.1f}   ratio {os_ / ss:.2f}x (median per round {med_s:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
