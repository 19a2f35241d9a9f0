"""Trained policies outside the run loop: load one from a run directory, evaluate it, record a video.

``load_policy(run_dir)`` rebuilds SAC's actor from the run's latest readable checkpoint (its layer sizes are read
from the weights) and returns a :class:`Policy`; ``evaluate(policy, env, episodes)`` runs deterministic episodes
(the mean of the tanh-squashed Gaussian, as the run loop's evaluations) and returns the returns, their mean and
standard deviation and, on Meta-World, the success rate. With ``video=PATH`` the frames of every episode are
written to an mp4 (imageio with its ffmpeg plugin); rendering MuJoCo needs an OpenGL backend
(``MUJOCO_GL=egl`` or ``osmesa``, see :func:`gl_backend`).

:func:`run_episodes` is the one episode loop: the run loop's own evaluations use it too.
"""
from __future__ import annotations

import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from parl_deep.config import ConfigError, TrainConfig, read_config

__all__ = ["Policy", "load_policy", "evaluate", "run_episodes", "gl_backend", "write_video"]


@dataclass
class Policy:
    """A trained SAC actor and the run it comes from (``config``: that run's TrainConfig, ``step``: the step of
    the checkpoint it was read from)."""

    actor: Any
    config: TrainConfig
    step: int

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        """The action for one observation (numpy in, numpy out): the mean action, or a sample."""
        return self.actor.act(obs, deterministic)


def load_policy(run_dir: str | os.PathLike) -> Policy:
    """The actor of the run in ``run_dir`` at its latest readable checkpoint (:class:`ConfigError` if none)."""
    from parl_deep.agents.sac import Actor
    from parl_deep.checkpoint import load_latest

    cfg = read_config(run_dir)
    sd = load_latest(run_dir)
    if sd is None:
        raise ConfigError(f"{run_dir} has no checkpoint yet: nothing trained to load")
    weights = sd["agent"]["actor"]
    first, last = weights["trunk.0.weight"], weights[f"trunk.{2 * cfg.sac.hidden_depth}.weight"]
    actor = Actor(first.shape[1], last.shape[0] // 2, cfg.sac.hidden_dim, cfg.sac.hidden_depth,
                  (cfg.sac.log_std_min, cfg.sac.log_std_max))
    actor.load_state_dict(weights)
    actor.eval()
    return Policy(actor=actor, config=cfg, step=int(sd["step"]))


def run_episodes(act: Callable[[np.ndarray], np.ndarray], env, episodes: int, max_steps: int | None = None,
                 on_frame: Callable[[np.ndarray], None] | None = None) -> tuple[list[float], list[bool]]:
    """Returns and successes (``info["success"]`` at any step) of ``episodes`` episodes of ``act`` in ``env``,
    each cut at ``max_steps`` (default: the environment's episode length); ``on_frame`` receives
    ``env.render()`` after every reset and step."""
    limit = min(max_steps or env.max_episode_steps, env.max_episode_steps)
    returns, successes = [], []
    for _ in range(episodes):
        obs, _ = env.reset()
        if on_frame is not None:
            on_frame(env.render())
        total, success = 0.0, False
        for _t in range(limit):
            obs, r, term, trunc, info = env.step(act(obs))
            if on_frame is not None:
                on_frame(env.render())
            total += r
            success = success or bool(info.get("success", False))
            if term or trunc:
                break
        env.end_episode()  # an episode cut short by max_steps must not be continued
        returns.append(total)
        successes.append(success)
    return returns, successes


def gl_backend() -> str | None:
    """The MuJoCo OpenGL backend to render with: ``MUJOCO_GL`` when it names one, else ``osmesa`` or ``egl``
    when its library is installed, else None."""
    chosen = os.environ.get("MUJOCO_GL", "").lower()
    if chosen and chosen != "disabled":
        return chosen
    for backend, lib in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if backend == "egl" and not Path("/dev/dri").exists():
            continue  # EGL without a GPU device: no context can be made
        if ctypes.util.find_library(lib):
            return backend
    return None


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: float) -> None:
    """``frames`` (H, W, 3) uint8 as an H.264 mp4 (imageio and its ffmpeg plugin, which carries ffmpeg)."""
    import imageio.v2 as imageio

    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=1) as w:
        for f in frames:
            w.append_data(np.asarray(f, dtype=np.uint8))


def evaluate(policy: Policy, env=None, episodes: int = 10, *, seed: int | None = None, max_steps: int | None = None,
             video: str | os.PathLike | None = None) -> dict[str, Any]:
    """Deterministic episodes of ``policy``: ``returns``, ``return_mean``, ``return_std``, ``episodes`` and, on
    Meta-World, ``success_rate``. ``env`` defaults to the run's environment with seed ``seed`` (default: the
    run's evaluation seed, its seed + 10000); ``video`` writes every frame to that mp4."""
    from parl_deep.envs import make_env, suite_of

    cfg = policy.config
    if env is None:
        env = make_env(cfg.env, cfg.seed + 10_000 if seed is None else seed, random_goal=cfg.metaworld_random_goal,
                       render_mode="rgb_array" if video else None)
    frames: list[np.ndarray] = []
    returns, successes = run_episodes(policy.act, env, episodes, max_steps, frames.append if video else None)
    out: dict[str, Any] = {"returns": [float(r) for r in returns], "return_mean": float(np.mean(returns)),
                           "return_std": float(np.std(returns)), "episodes": len(returns)}
    if suite_of(cfg.env) == "metaworld":
        out["success_rate"] = float(np.mean(successes))
    if video:
        write_video(frames, video, env.metadata.get("render_fps", 30))
        out["video"], out["frames"] = str(video), len(frames)
    return out
