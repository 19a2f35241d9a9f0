"""A-PARL on the real simulators: adapters checked against SAC's own numbers, 3,000-step runs with every
Term 2 estimator on walker-walk and door-open, and crash/resume of the A-PARL iteration log."""
import math

import pytest
import torch

from parl_deep.agents.sac import SAC, SACConfig
from parl_deep.methods import get_method
from parl_deep.methods.aparl import APARLMethod, MemberReward, SACCritic, SACPolicy
from parl_deep.preference.reward_model import RewardEnsemble
from parl_deep.train import resume, train

from ..fixtures import feedback_cfg, rows

APARL_OPTS = dict(continuation=30, cg_iters=5, neumann_terms=5, regressor_epochs=5, regressor_hidden=16,
                  policy_samples=2)


def test_sac_policy_log_prob_matches_the_actors_sampled_log_prob():
    torch.manual_seed(0)
    agent = SAC(5, 3, SACConfig(hidden_dim=32, hidden_depth=2))
    obs = torch.randn(64, 5)
    a, logp = agent.actor.sample(obs)
    pol = SACPolicy(agent.actor, samples=3)
    torch.testing.assert_close(pol.log_prob(obs, a.detach()), logp.squeeze(-1).detach(), atol=2e-3, rtol=1e-4)
    # expected() of a function of the state alone is that function; of the action, a sample mean in (-1, 1)
    torch.testing.assert_close(pol.expected(obs, lambda o, act: o.sum(-1)), obs.sum(-1))
    m = pol.expected(obs, lambda o, act: act[:, 0])
    assert m.shape == (64,) and bool((m.abs() < 1).all())
    q = SACCritic(agent.critic)(obs, a)
    torch.testing.assert_close(q, agent.critic(obs, a).min(0)[0].squeeze(-1))


def test_member_reward_is_the_members_network():
    ens = RewardEnsemble(4, 2, n_members=3, hidden=8, layers=1, seed=0)
    obs, act = torch.randn(7, 4), torch.randn(7, 2)
    r = MemberReward(ens, 1)(obs, act)
    torch.testing.assert_close(r, ens.member_rewards(1, torch.cat([obs, act], -1)))
    assert [p.data_ptr() for p in MemberReward(ens, 1).parameters()] == [p.data_ptr() for p in ens.members[1].parameters()]


def test_config_validation_and_recent_window_default():
    assert get_method("a-parl") is APARLMethod
    cfg = APARLMethod.resolve_config({}, "dmc:walker-walk")
    assert cfg["query_window"] == cfg["num_interact"] == 20000 and cfg["hypergrad"] == "soft-bellman"
    with pytest.raises(ValueError, match="hypergrad must be one of soft-bellman, ift-cg, neumann, none"):
        APARLMethod.resolve_config({"hypergrad": "newton"}, "dmc:walker-walk")
    with pytest.raises(ValueError, match="term2_step"):
        APARLMethod.resolve_config({"term2_step": -1.0}, "dmc:walker-walk")
    with pytest.raises(ValueError, match=r"a-parl: reward_device must be 'cpu' \("):
        APARLMethod.resolve_config({"reward_device": "cuda"}, "dmc:walker-walk")


@pytest.mark.smoke
@pytest.mark.parametrize("hypergrad", ["soft-bellman", "ift-cg", "neumann", "none"])
@pytest.mark.parametrize("env", ["dmc:walker-walk", "metaworld:door-open"])
def test_3000_step_a_parl_run_with_every_estimator(tmp_path, env, hypergrad):
    cfg = feedback_cfg(env, "a-parl", max_feedback=30, hypergrad=hypergrad, **APARL_OPTS)
    train(cfg, tmp_path, progress=False)
    ap, fb = rows(tmp_path / "aparl.csv"), rows(tmp_path / "feedback.csv")
    # one A-PARL iteration per feedback session, driven through parl_core.a_parl
    assert [int(r["iteration"]) for r in ap] == list(range(len(fb))) == [0, 1, 2]
    assert [int(r["step"]) for r in ap] == [int(r["step"]) for r in fb] == [1000, 2000, 3000]
    assert [int(r["inner_steps"]) for r in ap] == [1000, 1000, 1000]
    assert [int(r["query_window"]) for r in fb] == [1000, 1000, 1000]  # the recent window, not the buffer
    assert int(fb[-1]["queries"]) == 30 and all(int(r["pairs"]) == 10 for r in ap)
    for r in ap:
        assert float(r["term1_norm"]) > 0 and 0 < float(r["mc_coverage"]) <= 1
        if hypergrad == "none":
            assert float(r["term2_norm"]) == 0
        else:
            assert float(r["term2_norm"]) > 0 and -1 <= float(r["cosine"]) <= 1
    if hypergrad in ("ift-cg",):
        assert all(1 <= float(r["cg_iterations"]) <= APARL_OPTS["cg_iters"] for r in ap)


def test_a_parl_resume_does_not_repeat_iterations(tmp_path):
    cfg = feedback_cfg("dmc:walker-walk", "a-parl", max_feedback=30, **APARL_OPTS)
    train(cfg, tmp_path, progress=False, stop_after=2500)  # iterations at 1000, 2000; checkpoint at 1500
    assert [int(r["iteration"]) for r in rows(tmp_path / "aparl.csv")] == [0, 1]
    resume(tmp_path, progress=False)
    ap = rows(tmp_path / "aparl.csv")
    assert [int(r["iteration"]) for r in ap] == [0, 1, 2] and [int(r["step"]) for r in ap] == [1000, 2000, 3000]
    assert all(math.isfinite(float(r["term2_norm"])) for r in ap)
