"""The run loop of one training run (:class:`TrainLoop`): act in ``num_envs`` environments, store, update,
evaluate, log, checkpoint. The entry points that start and resume runs are :mod:`parl_deep.training`."""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np

from parl_deep import io
from parl_deep.checkpoint import save_checkpoint
from parl_deep.config import TrainConfig
from parl_deep.envs import suite_of
from parl_deep.evaluation import run_episodes
from parl_deep.methods import get_method

__all__ = ["TrainLoop", "EVAL_FIELDS", "EPISODE_FIELDS"]

EVAL_FIELDS = ["step", "return_mean", "return_std", "success_rate", "episodes", "wall_time_s"]
EPISODE_FIELDS = ["step", "episode", "return", "env_return", "length", "success", "steps_per_s",
                  "critic_loss", "actor_loss", "alpha", "entropy", "q_mean", "wall_time_s"]


class _NullWriter:
    def add_scalar(self, *a, **k):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def _tb_writer(logdir: Path, purge_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard missing: CSV logs still work
        return _NullWriter()
    return SummaryWriter(str(logdir), purge_step=purge_step)


class TrainLoop:
    """State of one run. Methods see it as ``loop`` (``loop.collector``, ``loop.agent``, ``loop.buffer``, ...)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        import torch

        from parl_deep.agents.sac import SAC
        from parl_deep.collection import Collector
        from parl_deep.envs import make_env
        from parl_deep.replay import ReplayBuffer

        torch.set_num_threads(1)
        self.cfg, self.run_dir = cfg, run_dir
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.collector = Collector(cfg.env, cfg.seed, cfg.num_envs, random_goal=cfg.metaworld_random_goal,
                                   mode=cfg.vector_mode)
        self.eval_env = None
        try:  # the collector may own subprocesses: close them if the rest cannot be built
            self.eval_env = make_env(cfg.env, cfg.seed + 10_000, random_goal=cfg.metaworld_random_goal)
            self.is_metaworld = suite_of(cfg.env) == "metaworld"
            obs_dim = self.collector.observation_space.shape[0]
            act_dim = self.collector.action_space.shape[0]
            self.agent = SAC(obs_dim, act_dim, cfg.sac, device=cfg.device)
            self.buffer = ReplayBuffer(obs_dim, act_dim, cfg.replay_capacity or cfg.steps)
            self.current_env = 0  # the copy whose transition is being handled
            self.method = get_method(cfg.method)(self, cfg.method_config)
        except BaseException:
            self.close()
            raise
        self.step = 0
        self.episode = 0
        self.last_losses: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.elapsed_before = 0.0  # wall time of earlier sessions of this run
        self._t0: float | None = None
        self._rate = 0.0  # environment steps per second, refreshed every 200 steps

    @property
    def live_episode(self) -> int:
        """Id of the episode whose transition is being stored (unique over the copies, :mod:`parl_deep.collection`)."""
        return self.collector.episode_ids[self.current_env]

    def wall_time(self) -> float:
        """Seconds of training so far, over every session of this run."""
        return self.elapsed_before + (time.time() - self._t0 if self._t0 is not None else 0.0)

    # -- checkpoint state
    def state_dict(self) -> dict:
        return {
            "format": 2, "config": self.cfg.to_dict(), "step": self.step, "episode": self.episode,
            **self.collector.state_dict(), "agent": self.agent.state_dict(),
            "buffer": self.buffer.state_dict(), "method": self.method.state_dict(),
            "eval_env": self.eval_env.get_state(),
            "rng": io.get_rng_states(self.rng), "last_losses": self.last_losses, "last_eval": self.last_eval,
            "elapsed": self.wall_time(),
        }

    def load_state_dict(self, sd: dict) -> None:
        self.step, self.episode = int(sd["step"]), int(sd["episode"])
        self.collector.load_state_dict(sd, self.episode)  # format 1 (one environment) too
        self.agent.load_state_dict(sd["agent"])
        self.buffer.load_state_dict(sd["buffer"], grow=self.cfg.replay_capacity is None)  # extended by --steps
        self.method.load_state_dict(sd["method"])
        self.eval_env.set_state(sd["eval_env"])
        io.set_rng_states(sd["rng"], self.rng)
        self.last_losses = dict(sd["last_losses"])
        self.last_eval = dict(sd["last_eval"])
        self.elapsed_before = float(sd["elapsed"])

    # -- evaluation
    def evaluate(self) -> dict[str, float]:
        """Mean return (and success rate on Meta-World) of the deterministic policy over ``eval_episodes``."""
        returns, successes = run_episodes(lambda o: self.agent.act(o, deterministic=True), self.eval_env,
                                          self.cfg.eval_episodes, self.cfg.eval_max_steps)
        out = {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
               "episodes": len(returns)}
        if self.is_metaworld:
            out["success_rate"] = float(np.mean(successes))
        return out

    # -- one vector step, its transitions handled one after another (parl_deep.collection)
    def _vector_step(self, ep_log: io.CSVLog, tb):
        """Act in every copy, then yield after handling each transition (the loop's per-step work follows)."""
        actions = self.collector.actions(self.agent.act, self.rng, random=self.step < self.cfg.sac.seed_steps)
        for tr in self.collector.step(actions):
            self.current_env = tr.env
            reward = float(self.method.reward(tr.obs, tr.act, tr.next_obs, tr.env_reward))
            self.buffer.add(tr.obs, tr.act, reward, tr.env_reward, tr.terminated, tr.next_obs)
            self.step += 1
            self.collector.record(tr, reward)
            if tr.terminated or tr.truncated:
                self._end_episode(tr.env, ep_log, tb)
            yield

    def _end_episode(self, k: int, ep_log: io.CSVLog, tb) -> None:
        ep = self.collector.episodes[k]
        self.episode += 1
        ep_log.write({"step": self.step, "episode": self.episode, "return": ep["return"],
                      "env_return": ep["env_return"], "length": ep["length"],
                      "success": int(ep["success"]) if self.is_metaworld else "",
                      "steps_per_s": self._rate, "wall_time_s": self.wall_time(), **self.last_losses})
        self.method.on_episode_end(dict(ep), self)
        tb.add_scalar("train/episode_return", ep["return"], self.step)
        tb.add_scalar("train/episode_env_return", ep["env_return"], self.step)
        if self.is_metaworld:
            tb.add_scalar("train/episode_success", float(ep["success"]), self.step)
        for k_, v in self.last_losses.items():
            tb.add_scalar(f"train/{k_}", v, self.step)
        tb.add_scalar("train/steps_per_s", self._rate, self.step)
        self.collector.end_episode(k, self.episode)

    def _learn(self) -> None:
        sac_cfg = self.cfg.sac
        if self.step <= sac_cfg.seed_steps:  # after seed_steps random transitions
            return
        for _ in range(sac_cfg.updates_per_step):
            batch = self.buffer.sample(sac_cfg.batch_size, self.rng)
            if self.cfg.device != "cpu":
                batch = tuple(t.to(self.agent.device, non_blocking=True) for t in batch)
            r = self.method.batch_reward(batch, self)  # None: learn from the stored reward
            if r is not None:
                batch = (batch[0], batch[1], r, batch[3], batch[4])
            losses = self.agent.update(*batch)
            if losses:
                self.last_losses = losses

    def _evaluate_and_log(self, eval_log: io.CSVLog, tb) -> None:
        res = self.evaluate()
        self.last_eval = res
        eval_log.write({"step": self.step, "wall_time_s": self.wall_time(), **res})
        for k, v in res.items():
            tb.add_scalar(f"eval/{k}", v, self.step)

    def _progress(self, bar, clock: list[float]) -> None:
        """Refresh the step rate (``clock`` = [time, step] of the rate window) and the progress bar."""
        now = time.time()
        self._rate = (self.step - clock[1]) / max(now - clock[0], 1e-9)
        if now - clock[0] > 5.0:
            clock[0], clock[1] = now, self.step
        if bar is None:
            return
        bar.n = self.step
        post = {"sps": f"{self._rate:.0f}"}
        if self.last_eval:
            post["eval_return"] = f"{self.last_eval['return_mean']:.1f}"
            if "success_rate" in self.last_eval:
                post["success"] = f"{self.last_eval['success_rate']:.2f}"
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    # -- the loop
    def run(self, *, progress: bool = True, stop_after: int | None = None) -> dict:
        """Train until ``cfg.steps`` (or, for tests, until ``stop_after`` steps without a final checkpoint)."""
        cfg, d = self.cfg, self.run_dir
        eval_log = io.CSVLog(d / io.EVAL_CSV, EVAL_FIELDS)
        ep_log = io.CSVLog(d / io.EPISODES_CSV, EPISODE_FIELDS)
        tb = _tb_writer(d / io.TB_DIR, purge_step=self.step + 1)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, file=sys.stderr,
                       mininterval=1.0)
        self._t0 = time.time()
        start_step = self.step
        clock = [time.time(), float(self.step)]
        try:
            while self.step < cfg.steps and (stop_after is None or self.step < stop_after):
                for _ in self._vector_step(ep_log, tb):
                    self._after_step(eval_log, ep_log, tb, bar, clock)
        finally:
            if bar is not None:
                bar.n = self.step
                bar.close()
            eval_log.close()
            ep_log.close()
            tb.close()
        return {"step": self.step, "steps_this_session": self.step - start_step,
                "wall_time_s": self.wall_time(), "last_eval": self.last_eval}

    def _after_step(self, eval_log: io.CSVLog, ep_log: io.CSVLog, tb, bar, clock: list[float]) -> None:
        """The per-step work after a transition is stored: method hook, SAC updates, evaluation, progress and
        checkpoint (the counts are multiples of num_envs, so evaluations and checkpoints fall between vector
        steps)."""
        cfg, d = self.cfg, self.run_dir
        for k, v in self.method.on_step(self.step, self).items():
            tb.add_scalar(f"method/{k}", v, self.step)
        self._learn()
        if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
            self._evaluate_and_log(eval_log, tb)
        if self.step % 200 == 0:
            self._progress(bar, clock)
        if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
            eval_log.sync()
            ep_log.sync()
            tb.flush()
            save_checkpoint(d / io.CHECKPOINT_NAME, self.state_dict())

    def close(self) -> None:
        """Close the environments (the subprocesses of vector_mode = subprocess, and the evaluation one)."""
        self.collector.close()
        if self.eval_env is not None:
            self.eval_env.close()
