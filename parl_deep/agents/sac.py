"""Soft Actor-Critic (Haarnoja et al., 2018) with a learned temperature, twin critics and target networks.

This is the SAC of PEBBLE (Lee et al., 2021), which PARL's experiments build on:

* Actor: an MLP gives the mean and log-std of a Gaussian; the log-std is squashed into
  ``[log_std_min, log_std_max]`` with a tanh; actions are ``tanh(u)``, ``u ~ N(mean, std)``, and the
  log-density is corrected for the tanh: ``log pi(a|s) = log N(u) - sum log(1 - tanh(u)^2)``.
* Critic: two Q-networks ``Q_1, Q_2`` trained on the soft Bellman target
  ``y = r + gamma * (1 - terminated) * (min_i Qbar_i(s', a') - alpha * log pi(a'|s'))``, ``a' ~ pi(.|s')``,
  where ``Qbar`` are Polyak-averaged target copies (``Qbar <- tau * Q + (1 - tau) * Qbar`` every
  ``critic_target_update_freq`` updates). Loss: ``sum_i MSE(Q_i(s, a), y)``.
* Actor loss: ``E[alpha * log pi(a|s) - min_i Q_i(s, a)]`` with ``a ~ pi(.|s)`` reparameterised.
* Temperature: ``alpha = exp(log_alpha)`` minimises ``E[alpha * (-log pi(a|s) - target_entropy)]`` with
  ``target_entropy = -action_dim``.

Speed: the two critics are one module whose weights have a leading "ensemble" axis of size 2; their first
layers run as one matrix multiply with the members' weights side by side, the later layers as one GEMM per
member (on these CPUs a batched ``bmm`` of two 256x256 products is ~1.5x slower than two plain GEMMs). The actor's loss evaluates the critic with *detached* weights, so no gradient is computed for
critic weights during the actor step. Target updates use ``torch._foreach_lerp_``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from parl_deep.agents.fused import EnsembleCritic, FusedAdamStep
from parl_deep.envs import suite_of
from parl_deep.fields import from_dict, opt
from parl_deep.nets import mlp


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


@dataclass
class SACConfig:
    """SAC hyperparameters (``--set sac.KEY=VALUE``). Saved with every run (``config.json``)."""

    hidden_dim: int = opt(256, low=1)
    """width of the actor's and critics' hidden layers"""
    hidden_depth: int = opt(2, low=1)
    """number of hidden layers of the actor and of each critic"""
    batch_size: int = opt(256, low=1)
    """minibatch size of every SAC update"""
    discount: float = opt(0.99, low=0.0, high=1.0, low_open=True)
    """discount factor gamma of the soft Bellman target"""
    init_temperature: float = opt(0.1, low=0.0, low_open=True)
    """initial entropy temperature alpha"""
    actor_lr: float = opt(5e-4, low=0.0, low_open=True)
    """Adam learning rate of the actor"""
    critic_lr: float = opt(5e-4, low=0.0, low_open=True)
    """Adam learning rate of the critics"""
    alpha_lr: float = opt(1e-4, low=0.0, low_open=True)
    """Adam learning rate of log alpha"""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas of all three optimisers"""
    critic_tau: float = opt(0.005, low=0.0, high=1.0)
    """Polyak rate of the target critics"""
    critic_target_update_freq: int = opt(2, low=1)
    """update the target critics every this many SAC updates"""
    actor_update_freq: int = opt(1, low=1)
    """update the actor (and alpha) every this many SAC updates"""
    log_std_min: float = -5.0
    """lower bound of the actor's log standard deviation"""
    log_std_max: float = 2.0
    """upper bound of the actor's log standard deviation"""
    learnable_temperature: bool = True
    """learn alpha towards the target entropy -action_dim (false: keep init_temperature)"""
    seed_steps: int = opt(5000, low=0)
    """environment steps with uniformly random actions (and no updates) before learning starts"""
    updates_per_step: int = opt(1, low=1)
    """SAC gradient updates per environment step (per stored transition, with several environments too) once
    learning has started: the update-to-data ratio"""
    compile: str = opt("off", choices=COMPILE_MODES)
    """torch.compile the critic and actor losses (forward and backward) with this mode; reduce-overhead also
    captures CUDA graphs on a GPU; off: eager (on CPU eager measured faster, docs/benchmarks.md)"""

    @classmethod
    def from_dict(cls, d: dict) -> "SACConfig":
        return from_dict(cls, d, "SAC config key")


PRESETS = ("paper", "cpu")


def preset(name: str, env_name: str) -> SACConfig:
    """SAC hyperparameters for ``env_name`` under the preset ``name``.

    ``paper``: PEBBLE's published SAC settings (Lee et al., 2021, Table 2 of the appendix):
    DMC 1024x2 MLPs, batch 1024, lr 5e-4 (walker, cheetah) / 1e-4 (quadruped); Meta-World 256x3 MLPs,
    batch 512, lr 3e-4; tau 0.005, initial temperature 0.1, target update every 2 updates, discount 0.99,
    Adam betas (0.9, 0.999), alpha lr 1e-4, 5000 random seed steps, one update per step.

    ``cpu``: the same algorithm sized for a small CPU box (throughput in docs/parl_deep.md), other settings as
    ``paper`` for that environment: DMC 128x2 MLPs, batch 256 (100k walker-walk steps in ~15 min of one
    core); Meta-World 256x2 MLPs, batch 256. (Until the overhead work of issue 3, DMC used 256x2 as well;
    runs keep the sizes saved in their ``config.json``.)
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    is_mw = suite_of(env_name) == "metaworld"
    if is_mw:
        cfg = SACConfig(hidden_dim=256, hidden_depth=3, batch_size=512, actor_lr=3e-4, critic_lr=3e-4)
    else:
        lr = 1e-4 if "quadruped" in env_name else 5e-4
        cfg = SACConfig(hidden_dim=1024, hidden_depth=2, batch_size=1024, actor_lr=lr, critic_lr=lr)
    if name == "cpu":
        cfg = dataclasses.replace(cfg, hidden_dim=256 if is_mw else 128, hidden_depth=2, batch_size=256)
    return cfg


def _squashed_log_density(eps: torch.Tensor, log_std: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Per-dimension log-density of a = tanh(u), u = mean + std * eps: log N(u; mean, std) minus
    log(1 - tanh(u)^2), the latter in the stable form 2 (log 2 - u - softplus(-2u))."""
    return (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
            - 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u)))


class Actor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, depth: int, log_std_bounds=(-5.0, 2.0)):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_dim, 2 * act_dim, depth)
        self.log_std_min, self.log_std_max = log_std_bounds

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        log_std = torch.tanh(log_std)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1.0)
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised action and its log-density (summed over action dimensions, shape ``(B, 1)``)."""
        mean, log_std = self.dist_params(obs)
        std = log_std.exp()
        eps = torch.randn_like(mean)
        u = mean + std * eps
        a = torch.tanh(u)
        return a, _squashed_log_density(eps, log_std, u).sum(-1, keepdim=True)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of given actions in (-1, 1), summed over action dimensions, shape ``(B,)``
        (u = atanh(a) with a clamped 1e-6 inside the interval)."""
        mean, log_std = self.dist_params(obs)
        u = torch.atanh(act.clamp(-1 + 1e-6, 1 - 1e-6))
        return _squashed_log_density((u - mean) / log_std.exp(), log_std, u).sum(-1)

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dist_params(obs)[0])

    @torch.inference_mode()
    def act(self, obs, deterministic: bool = False, device: torch.device | str = "cpu"):
        """Action for one observation (obs_dim,), or one per row of a batch (N, obs_dim) (numpy in, numpy out):
        the mode, or a sample."""
        o = torch.as_tensor(obs, dtype=torch.float32, device=device)
        single = o.ndim == 1
        o = o.unsqueeze(0) if single else o
        a = self.mode(o) if deterministic else self.sample(o)[0]
        return (a[0] if single else a).cpu().numpy()


class SAC:
    """The agent: networks, optimisers, temperature, and :meth:`update` (one gradient step)."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, device: str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.act_dim = act_dim
        self.actor = Actor(obs_dim, act_dim, cfg.hidden_dim, cfg.hidden_depth,
                           (cfg.log_std_min, cfg.log_std_max)).to(self.device)
        self.obs_dim = obs_dim
        self.critic = EnsembleCritic(obs_dim, act_dim, cfg.hidden_dim, cfg.hidden_depth).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=self.device, requires_grad=True)
        self.target_entropy = -float(act_dim)
        # Fused Adam (one kernel for all parameters) is ~3x faster than the for-each version on CPU.
        opt = dict(betas=tuple(cfg.betas), fused=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, **opt)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, **opt)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr, **opt)
        self._actor_step = FusedAdamStep(self.actor_opt)
        self._critic_step = FusedAdamStep(self.critic_opt)
        self._alpha_step = FusedAdamStep(self.alpha_opt)
        self.num_updates = 0
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self._critic_loss_fn, self._actor_loss_fn = self._critic_loss, self._actor_loss
        if cfg.compile != "off":
            self._critic_loss_fn = torch.compile(self._critic_loss, mode=cfg.compile)
            self._actor_loss_fn = torch.compile(self._actor_loss, mode=cfg.compile)

    def _critic_loss(self, obs, act, rew, next_obs, not_done, alpha) -> tuple[torch.Tensor, torch.Tensor]:
        """The twin critics' squared soft Bellman error, summed over the two (and Q(obs, act))."""
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs)
            q1_t, q2_t = self.critic_target(next_obs, next_a)
            target_q = torch.minimum(q1_t, q2_t) - alpha * next_logp
            y = rew + not_done * self.cfg.discount * target_q
        q = self.critic(obs, act)
        return (q - y.unsqueeze(0)).pow(2).mean(dim=(1, 2)).sum(), q

    def _actor_loss(self, obs, alpha) -> tuple[torch.Tensor, torch.Tensor]:
        """E[alpha log pi(a|s) - min_i Q_i(s, a)] over reparameterised actions (and their log pi)."""
        a, logp = self.actor.sample(obs)
        q1_pi, q2_pi = self.critic(obs, a, detach_params=True)
        q_pi = torch.minimum(q1_pi, q2_pi)
        return (alpha * logp - q_pi).mean(), logp

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    def act(self, obs, deterministic: bool = False):
        """Action for one observation, or for a batch of them (numpy in, numpy out; :meth:`Actor.act`)."""
        return self.actor.act(obs, deterministic, self.device)

    def update(self, obs, act, rew, next_obs, not_done) -> dict[str, float]:
        """One SAC update on a batch of tensors (``rew`` and ``not_done`` have shape ``(B, 1)``).

        Returns the losses as Python floats only every 100th call (reading them forces no sync on CPU but
        costs a little); other calls return an empty dict.
        """
        cfg = self.cfg
        if cfg.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # one CUDA-graph step per update
        alpha = self.log_alpha.detach().exp()
        out: dict[str, torch.Tensor] = {}
        log = self.num_updates % 100 == 0

        # --- critic ---
        critic_loss, q = self._critic_loss_fn(obs, act, rew, next_obs, not_done, alpha)
        self._critic_step.zero_grad()
        critic_loss.backward()
        self._critic_step.step()
        if log:  # read now: a later CUDA-graph replay may overwrite a compiled graph's outputs
            out["critic_loss"], out["q_mean"] = critic_loss.detach().clone(), q.detach().mean()

        # --- actor and temperature ---
        if self.num_updates % cfg.actor_update_freq == 0:
            actor_loss, logp = self._actor_loss_fn(obs, alpha)
            self._actor_step.zero_grad()
            actor_loss.backward()
            self._actor_step.step()
            if cfg.learnable_temperature:
                alpha_loss = (self.log_alpha.exp() * (-logp.detach() - self.target_entropy)).mean()
                self._alpha_step.zero_grad()
                alpha_loss.backward()
                self._alpha_step.step()
                if log:
                    out["alpha_loss"] = alpha_loss
            if log:
                out["actor_loss"] = actor_loss
                out["entropy"] = -logp.mean()

        # --- target critics ---
        if self.num_updates % cfg.critic_target_update_freq == 0:
            with torch.no_grad():
                torch._foreach_lerp_(self._target_params, self._critic_params, cfg.critic_tau)
        self.num_updates += 1
        if not log:
            return {}
        out["alpha"] = alpha
        return {k: float(v.detach()) for k, v in out.items()}

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            # in the stacked parameter layout of earlier versions: checkpoints load in old and new code
            "critic_opt": self.critic.optimizer_state_to_stacked(self.critic_opt.state_dict()),
            "alpha_opt": self.alpha_opt.state_dict(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.actor.load_state_dict(sd["actor"])
        self.critic.load_state_dict(sd["critic"])
        self.critic_target.load_state_dict(sd["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(sd["log_alpha"])
        self.actor_opt.load_state_dict(sd["actor_opt"])
        self.critic_opt.load_state_dict(self.critic.optimizer_state_from_stacked(sd["critic_opt"]))
        self.alpha_opt.load_state_dict(sd["alpha_opt"])
        for s in (self._actor_step, self._critic_step, self._alpha_step):
            s.invalidate()
        self.num_updates = int(sd["num_updates"])

    def reset_critic(self) -> None:
        """Fresh critic weights (target = critic) and a fresh critic optimiser state, in place (PEBBLE resets
        the critic after unsupervised pre-training). Also drops the fused step's cached state."""
        fresh = EnsembleCritic(self.obs_dim, self.act_dim, self.cfg.hidden_dim, self.cfg.hidden_depth).to(self.device)
        self.critic.load_state_dict(fresh.state_dict())
        self.critic_target.load_state_dict(fresh.state_dict())
        self.critic_opt.state.clear()
        self._critic_step.invalidate()
