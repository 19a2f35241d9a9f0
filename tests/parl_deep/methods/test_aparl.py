"""A-PARL on the real simulators: adapters checked against SAC's own numbers, 3,000-step runs with every
Term 2 estimator on walker-walk and door-open, and crash/resume of the A-PARL iteration log."""
import math
import re

import pytest
import torch

from parl_deep.agents.sac import SAC, SACConfig
from parl_deep.methods import get_method
from parl_deep.methods.aparl import APARLMethod, MemberReward, SACCritic, SACPolicy
from parl_deep.preference.reward_model import RewardEnsemble
from parl_deep.training import resume, train

from ..fixtures import feedback_cfg, loaded_loop, rows, strip_time

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


OWN, REF = "the session's pairs, min(reward_batch, max_feedback)", \
    "the reference pairs, min(win_rate_pairs, max_feedback - reward_batch)"


@pytest.mark.parametrize("options, short", [
    ({"term2_gate": "fold-z", "gate_folds": 11}, f"{OWN} = 10"),
    ({"term2_gate": "split-cosine", "reward_batch": 1}, f"{OWN} = 1"),
    ({"term2_gate": "fold-z", "max_feedback": 3}, f"{OWN} = 3"),
    ({"term2_gate": "fold-z", "upper": "win-rate", "win_rate_pairs": 4}, f"{REF} = 4"),
    ({"term2_gate": "fold-z", "upper": "likelihood+win-rate", "max_feedback": 14}, f"{REF} = 4")])
def test_a_gate_whose_parts_no_session_can_fill_is_refused_before_the_run(options, short):
    """Every decision of such a gate would be NaN and closed: a run that is silently PEBBLE. feedback_cfg's
    sessions ask reward_batch = 10 of max_feedback = 15 pairs."""
    from parl_deep.fields import ConfigError

    cfg = feedback_cfg("dmc:walker-walk", "a-parl", **options)
    prefix = f"a-parl: term2_gate = {options['term2_gate']} splits each component into "
    with pytest.raises(ConfigError, match=re.escape(prefix) + ".* more than " + re.escape(f"{short}; lower")):
        APARLMethod.check_run(cfg)
    APARLMethod.check_run(feedback_cfg("dmc:walker-walk", "a-parl", **{**options, "term2_gate": "off"}))


def test_the_gate_check_reads_the_merged_options_and_only_the_components_upper_has():
    """Win-rate alone never splits the session's own pairs; a task preset's reward_batch counts, not the class
    default."""
    APARLMethod.check_run(feedback_cfg("dmc:walker-walk", "a-parl", term2_gate="fold-z", upper="win-rate",
                                       reward_batch=3, win_rate_pairs=8, max_feedback=20))
    cfg = feedback_cfg("metaworld:button-press-topdown", "a-parl", term2_gate="fold-z", gate_folds=150,
                       max_feedback=40000)
    del cfg.method_config["reward_batch"]  # the preset's: 200 per session at this budget
    assert APARLMethod.resolve_config(cfg.method_config, cfg.env)["reward_batch"] == 200
    APARLMethod.check_run(cfg)
    cfg.method_config["gate_folds"] = 201
    with pytest.raises(ValueError, match=re.escape("min(reward_batch, max_feedback) = 200")):
        APARLMethod.check_run(cfg)


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


def _first_session(tmp_path, monkeypatch=None, noise=None, **options):
    """A run loop right after A-PARL's first iteration (step 1000); with ``noise`` (a scale) every Term 2
    estimate is independent Gaussian noise of that scale."""
    import parl_deep.methods.aparl as aparl
    from parl_deep.preference.hypergrad import Term2Result
    from parl_deep.training import TrainLoop

    if noise is not None:
        gen = torch.Generator().manual_seed(0)

        def fake(name, policy, reward, batch, **kw):
            n = sum(p.numel() for p in reward.parameters())
            return Term2Result(term2=noise * torch.randn(n, generator=gen), term1=torch.randn(n, generator=gen),
                               objective=0.0, seconds=0.0)

        monkeypatch.setattr(aparl, "estimate", fake)
    cfg = feedback_cfg("dmc:walker-walk", "a-parl", steps=2000, **{"max_feedback": 30, **APARL_OPTS, **options})
    tmp_path.mkdir(parents=True, exist_ok=True)
    loop = TrainLoop(cfg, tmp_path)
    loop.run(progress=False, stop_after=1001)
    assert loop.method.sessions == 1
    return loop


def _params(loop):
    return [p.detach().clone() for p in loop.method.reward_model.members.parameters()]


@pytest.mark.parametrize("gate", ["split-cosine", "fold-z"])
def test_the_gate_on_pure_noise_leaves_exactly_pebbles_update(tmp_path, monkeypatch, gate):
    gated = _first_session(tmp_path / "g", monkeypatch, noise=100.0, hypergrad="ift-cg", term2_gate=gate)
    row = rows(tmp_path / "g" / "aparl.csv")[0]
    # independent full-rank noise: the halves' cosine ~ 0; z ~ 1 (E K|g|^2 = E s^2), far below F(1, 4)'s 7.7
    assert row["gate_open"] == "0" and abs(float(row["gate_stat"]) - (gate == "fold-z")) < 0.2
    monkeypatch.undo()
    plain = _first_session(tmp_path / "p", hypergrad="none")  # Term 2 = 0: the reward round alone, PEBBLE's
    assert all(torch.equal(a, b) for a, b in zip(_params(gated), _params(plain)))
    ungated = _first_session(tmp_path / "u", monkeypatch, noise=100.0, hypergrad="ift-cg")
    assert not all(torch.equal(a, b) for a, b in zip(_params(ungated), _params(plain)))  # noise does move phi


@pytest.mark.parametrize("gate", ["split-cosine", "fold-z"])
def test_the_gate_opens_on_a_consistent_signal(tmp_path, monkeypatch, gate):
    import parl_deep.methods.aparl as aparl
    from parl_deep.preference.hypergrad import Term2Result

    def consistent(name, policy, reward, batch, **kw):
        n = sum(p.numel() for p in reward.parameters())
        return Term2Result(term2=torch.ones(n), term1=torch.ones(n), objective=0.0, seconds=0.0)

    monkeypatch.setattr(aparl, "estimate", consistent)
    _first_session(tmp_path, hypergrad="ift-cg", term2_gate=gate)
    row = rows(tmp_path / "aparl.csv")[0]
    assert row["gate_open"] == "1" and float(row["gate_stat"]) == (pytest.approx(1.0) if gate == "split-cosine"
                                                                    else float("inf"))  # identical folds


def test_the_trust_region_bounds_the_change_of_the_reward(tmp_path, monkeypatch):
    loop = _first_session(tmp_path, monkeypatch, noise=0.0, hypergrad="ift-cg", term2_scale="trust-region",
                          trust_radius=0.01, term2_step=1.0)
    m = loop.method
    batch = m.pair_batch()
    obs, act = (x[:, :, :batch.segment].reshape(-1, x.shape[-1]) for x in (batch.obs, batch.act))
    before = [MemberReward(m.reward_model, k)(obs, act).detach() for k in range(m.reward_model.n_members)]
    gen = torch.Generator().manual_seed(1)
    n = sum(p.numel() for p in m.reward_model.members[0].parameters())
    out = m.ascend_term2([torch.randn(n, generator=gen) / n ** 0.5 for _ in range(m.reward_model.n_members)])
    assert 0 < out["scale_factor"] < 1  # a unit-norm random step moves r by more than 0.01
    for k in range(m.reward_model.n_members):
        rms = float((MemberReward(m.reward_model, k)(obs, act).detach() - before[k]).pow(2).mean().sqrt())
        assert rms == pytest.approx(0.01, rel=0.3)  # first order in the step
    assert "scale_factor" in rows(tmp_path / "aparl.csv")[0]


def test_psi_discount_and_upper_reach_the_estimator(tmp_path, monkeypatch):
    import parl_deep.methods.aparl as aparl
    from parl_deep.preference.hypergrad import Term2Result, brier_objective

    seen = []

    def spy(name, policy, reward, batch, *, gamma, objective=None, **kw):
        seen.append((gamma, objective))
        n = sum(p.numel() for p in reward.parameters())
        return Term2Result(term2=torch.zeros(n), term1=torch.ones(n), objective=0.0, seconds=0.0)

    monkeypatch.setattr(aparl, "estimate", spy)
    _first_session(tmp_path, hypergrad="ift-cg", psi_discount=0.5, upper="brier")
    assert seen and all(g == 0.5 and f is brier_objective for g, f in seen)
    cols = rows(tmp_path / "aparl.csv")[0]
    assert "gate_stat" not in cols and "scale_factor" not in cols  # default columns when those are off


NEVER_OPEN = dict(hypergrad="soft-bellman", term2_gate="fold-z", gate_alpha=1e-300, query_window=10**9, **APARL_OPTS)


def _whole_run(run_dir, method, stop_after=None, **options):
    """A 3,000-step walker run (3 sessions), optionally interrupted at ``stop_after`` and resumed: its logs without
    the clock columns, and its reward ensemble's and actor's parameters at the end."""
    cfg = feedback_cfg("dmc:walker-walk", method, max_feedback=30, **options)
    train(cfg, run_dir, progress=False, stop_after=stop_after)
    if stop_after is not None:
        resume(run_dir, progress=False)
    loop = loaded_loop(cfg, run_dir)
    params = [p.detach().clone() for p in [*loop.method.reward_model.members.parameters(),
                                           *loop.agent.actor.parameters()]]
    return {name: strip_time(rows(run_dir / name)) for name in ("eval.csv", "feedback.csv", "episodes.csv")}, params


@pytest.mark.slow
def test_with_its_own_estimator_stream_a_gate_that_never_opens_is_pebbles_whole_run(tmp_path):
    """fold-z at gate_alpha 1e-300 (threshold inf) computes Term 2 at every session and never ascends it. With
    estimator_rng = own and a query window as long as the run, the whole run -- interrupted and resumed too -- is
    PEBBLE's: the same logs and the same parameters; its estimates are those of the uninterrupted run. With the
    shared stream the estimator's draws change the run."""
    pebble_logs, pebble_params = _whole_run(tmp_path / "pebble", "pebble")
    own_logs, own_params = _whole_run(tmp_path / "own", "a-parl", stop_after=2500, estimator_rng="own", **NEVER_OPEN)
    ap = rows(tmp_path / "own" / "aparl.csv")
    assert [r["gate_open"] for r in ap] == ["0"] * 3 and all(math.isfinite(float(r["gate_stat"])) for r in ap)
    assert all(float(r["term2_norm"]) > 0 for r in ap)  # the estimator did run
    assert own_logs == pebble_logs
    assert all(torch.equal(a, b) for a, b in zip(own_params, pebble_params))
    # the estimator's own stream is checkpointed: the resumed run's estimates are the uninterrupted run's
    _whole_run(tmp_path / "own-whole", "a-parl", estimator_rng="own", **NEVER_OPEN)
    assert strip_time(rows(tmp_path / "own-whole" / "aparl.csv")) == strip_time(ap)
    shared_logs, shared_params = _whole_run(tmp_path / "shared", "a-parl", **NEVER_OPEN)
    assert shared_logs != pebble_logs and not all(torch.equal(a, b) for a, b in zip(shared_params, pebble_params))
