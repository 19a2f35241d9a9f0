"""The pieces A-PARL (:mod:`parl_deep.methods.aparl`) plugs into the Term 2 estimators and into
:func:`parl_core.apar.a_parl`: SAC's actor and critic and one reward-ensemble member as the torch modules of
:mod:`parl_deep.preference.hypergrad`, the run loop as the lower-level solver, and small vector helpers."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch

from parl_deep.preference.hypergrad import PairBatch

if TYPE_CHECKING:  # pragma: no cover
    from parl_deep.training import TrainLoop

__all__ = ["SACPolicy", "SACCritic", "MemberReward", "RunLoopSolver", "cosine", "sub_batch", "add_flat",
           "isolated_torch_rng"]


class SACPolicy(torch.nn.Module):
    """The hypergrad ``Policy`` protocol for SAC's tanh-squashed Gaussian actor."""

    def __init__(self, actor: torch.nn.Module, samples: int = 4):
        super().__init__()
        self.actor, self.samples = actor, int(samples)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.actor.log_prob(obs, act)

    def expected(self, obs: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """E_{a~pi(.|s)}[fn(s, a)] by ``samples`` reparameterised actions per state."""
        reps = obs.repeat(self.samples, 1)
        a, _ = self.actor.sample(reps)
        return fn(reps, a).reshape(self.samples, len(obs)).mean(0)


class SACCritic(torch.nn.Module):
    """Q(s, a) = min over SAC's twin critics (the value SAC's actor ascends)."""

    def __init__(self, critic: torch.nn.Module):
        super().__init__()
        self.critic = critic

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, act, detach_params=True).min(0)[0].squeeze(-1)


class MemberReward(torch.nn.Module):
    """One ensemble member as r_phi(obs, act) -> (N,)."""

    def __init__(self, ensemble, member: int):
        super().__init__()
        self.net = ensemble.members[member]
        self._ensemble, self._member = ensemble, member

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self._ensemble.member_rewards(self._member, torch.cat([obs, act], dim=-1))


class RunLoopSolver:
    """``LowerSolver`` whose K inner steps are the K environment steps and SAC updates the run loop performed
    since the previous session (the loop drives the environment; A-PARL's iteration starts when it is due)."""

    def __init__(self, loop: "TrainLoop", elapsed: int):
        self.loop, self.elapsed = loop, elapsed

    def improve(self, phi, theta, steps: int):
        if steps != self.elapsed:
            raise RuntimeError(f"A-PARL asked for {steps} inner steps, the run loop ran {self.elapsed}")
        return self.loop.agent


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """a . b / (|a| |b|); NaN when either is zero."""
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else float("nan")


def sub_batch(batch: PairBatch, rows: slice) -> PairBatch:
    """The pairs ``rows`` of ``batch`` (same segment length and policy sides)."""
    return PairBatch(obs=batch.obs[rows], act=batch.act[rows], labels=batch.labels[rows], segment=batch.segment,
                     mask=None if batch.mask is None else batch.mask[rows], policy_sides=batch.policy_sides)


def add_flat(module: torch.nn.Module, flat: torch.Tensor) -> None:
    """module's parameters += the flat vector ``flat`` (in ``parameters()`` order)."""
    offset = 0
    for p in module.parameters():
        n = p.numel()
        p.add_(flat[offset:offset + n].reshape(p.shape).to(device=p.device, dtype=p.dtype))
        offset += n


@contextlib.contextmanager
def isolated_torch_rng(generator: np.random.Generator, device: torch.device) -> Iterator[None]:
    """Inside: torch's global generators seeded from ``generator``; after: every one restored to where it was (the
    CPU's, every CUDA device's once CUDA is initialised, since ``torch.manual_seed`` reseeds them all, and
    ``device``'s on another accelerator), so nothing drawn inside changes what the rest of the run draws."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        devices, kind = list(range(torch.cuda.device_count())), "cuda"
    elif device.type not in ("cpu", "cuda"):
        index = device.index if device.index is not None else getattr(torch, device.type).current_device()
        devices, kind = [index], device.type
    else:
        devices, kind = [], None
    with torch.random.fork_rng(devices=devices, device_type=kind):
        torch.manual_seed(int(generator.integers(2**63)))
        yield
