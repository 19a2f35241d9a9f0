"""The fused twin critics and the fused Adam step are bit-identical to the plain layout and torch's Adam."""
from __future__ import annotations

import pytest
import torch

from parl_deep.agents.fused import EnsembleCritic, FusedAdamStep

torch.set_num_threads(1)


def test_ensemble_critic_equals_independent_mlps():
    torch.manual_seed(0)
    critic = EnsembleCritic(4, 2, 8, 2, n=2)
    obs, act = torch.randn(10, 4), torch.randn(10, 2)
    out = critic(obs, act)
    assert out.shape == (2, 10, 1)
    x0 = torch.cat([obs, act], -1)
    for i in range(2):
        x = x0
        for j, (w, b) in enumerate(zip(critic.weights, critic.biases)):
            x = x @ w[i] + b[i, 0]
            if j < len(critic.weights) - 1:
                x = torch.relu(x)
        torch.testing.assert_close(out[i], x)
    assert not torch.allclose(out[0], out[1]), "the twin critics must be initialised independently"


def test_critic_state_dict_uses_the_stacked_layout_and_round_trips():
    torch.manual_seed(0)
    critic = EnsembleCritic(4, 2, 8, 2, n=2)
    sd = critic.state_dict()
    assert sorted(sd) == ["biases.0", "biases.1", "biases.2", "weights.0", "weights.1", "weights.2"]
    assert sd["weights.0"].shape == (2, 6, 8) and sd["weights.1"].shape == (2, 8, 8)
    assert sd["weights.2"].shape == (2, 8, 1) and sd["biases.1"].shape == (2, 1, 8)
    other = EnsembleCritic(4, 2, 8, 2, n=2)
    other.load_state_dict(sd)
    for p, q in zip(critic.parameters(), other.parameters()):
        assert torch.equal(p, q)
    obs, act = torch.randn(10, 4), torch.randn(10, 2)
    assert torch.equal(critic(obs, act), other(obs, act))
    ts = [torch.randn_like(p) for p in critic.parameters()]
    back = critic.from_stacked(critic.to_stacked(ts))
    assert all(torch.equal(a, b) for a, b in zip(ts, back))
    with pytest.raises(RuntimeError, match="Missing key"):
        other.load_state_dict({k: v for k, v in sd.items() if k != "biases.2"})


def test_fused_adam_step_is_bit_identical_to_torch_adam():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.Adam(n.parameters(), lr=1e-2, fused=True) for n in nets]
    fast = FusedAdamStep(opts[1])
    for k in range(6):
        x = torch.randn(32, 5)
        for i, (net, opt) in enumerate(zip(nets, opts)):
            if i == 0:
                opt.zero_grad(set_to_none=True)
            else:
                fast.zero_grad()
            net(x).pow(2).mean().backward()
            if i == 0:
                opt.step()
            else:
                fast.step()
        if k == 3:  # reloading the optimiser replaces its state tensors
            opts[1].load_state_dict(opts[1].state_dict())
            fast.invalidate()
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(p, q)
    assert opts[1].state_dict()["state"][0]["step"].item() == 6
