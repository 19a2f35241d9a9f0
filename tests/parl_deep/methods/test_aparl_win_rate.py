"""A-PARL with ``upper = win-rate`` on the real simulator: the label budget (reference pairs count against
max_feedback), the components reaching the estimator (one-sided reference pairs, weights, the gate's halves, the
clip's likelihood scale), config validation, and the default options' log columns."""
import math

import pytest
import torch

from parl_deep.fields import ConfigError
from parl_deep.methods.aparl import APARLMethod
from parl_deep.preference.hypergrad import Term2Result
from parl_deep.preference.win_rate import win_rate_objective
from parl_deep.training import train

from ..fixtures import feedback_cfg, rows
from .test_aparl import APARL_OPTS, _first_session

DEFAULT_APARL_COLUMNS = ["step", "iteration", "inner_steps", "query_window", "pairs", "term1_norm", "term2_norm",
                         "clipped", "cosine", "mc_coverage", "temperature", "seconds", "cg_iterations", "residual"]
DEFAULT_FEEDBACK_COLUMNS = ["step", "session", "queries", "labels", "new_queries", "new_labels", "dataset_size",
                            "unlabelled_size", "query_window", "feed_type", "fresh_acc", "train_acc", "train_loss",
                            "epochs", "eval_acc", "reward_corr", "pseudo_frac", "relabelled", "seconds", "wall_time_s"]


def _header(path):
    return path.read_text().splitlines()[0].split(",")


@pytest.mark.slow
@pytest.mark.parametrize("options,reference_labels", [
    # random reference: 10 + 6 at step 1000, then 9 left: all of them to the session's own pairs, none to reference
    (dict(upper="win-rate"), [6, 0]),
    # previous reference: no window before the first one at step 1000, then 10 + 5 at step 2000
    (dict(upper="likelihood+0.5*win-rate", win_rate_reference="previous", hypergrad="ift-cg",
          term2_gate="split-cosine"), [0, 5]),
])
def test_a_win_rate_run_spends_exactly_the_label_budget(tmp_path, options, reference_labels):
    cfg = feedback_cfg("dmc:walker-walk", "a-parl", steps=2000, max_feedback=25, win_rate_pairs=6, **APARL_OPTS,
                       **options)
    train(cfg, tmp_path, progress=False)
    ap, fb = rows(tmp_path / "aparl.csv"), rows(tmp_path / "feedback.csv")
    assert _header(tmp_path / "aparl.csv")[-2:] == ["reference_labels", "win_rate"]
    assert [int(float(r["reference_labels"])) for r in ap] == reference_labels
    assert int(fb[-1]["queries"]) == 25  # the whole budget, and no more
    assert sum(int(r["new_queries"]) for r in fb) + sum(reference_labels) == 25
    # the oracle keeps every label, and the reference pairs join the reward round's dataset (win_rate_fit)
    assert [int(r["dataset_size"]) for r in fb] == [int(r["queries"]) for r in fb]
    for r, spent in zip(ap, reference_labels):
        if spent:
            assert 0 <= float(r["win_rate"]) <= 1 and float(r["term2_norm"]) > 0
        else:
            assert math.isnan(float(r["win_rate"]))
    if options["upper"] == "win-rate":  # a session without reference pairs has no Term 2 at all
        assert math.isnan(float(ap[1]["term2_norm"])) and float(ap[0]["term1_norm"]) > 0


def _spy(monkeypatch, seen, two_sided=1.0, one_sided=2.0, term1=1.0):
    """Replace the estimator: Term 2 = ``two_sided`` or ``one_sided`` times ones (by the batch's policy sides),
    Term 1 = ``term1`` times ones for two-sided batches and 0 for one-sided ones (as the win rate's)."""
    import parl_deep.methods.aparl as aparl

    def spy(name, policy, reward, batch, *, objective=None, **kw):
        seen.append((name, batch.policy_sides, len(batch.labels), objective))
        n = sum(p.numel() for p in reward.parameters())
        one = batch.policy_sides == (0,)
        return Term2Result(term2=(one_sided if one else two_sided) * torch.ones(n),
                           term1=(0.0 if one else term1) * torch.ones(n), objective=0.0, seconds=0.0)

    monkeypatch.setattr(aparl, "estimate", spy)


def test_a_weighted_upper_sums_its_components(tmp_path, monkeypatch):
    seen = []
    _spy(monkeypatch, seen)
    _first_session(tmp_path, hypergrad="ift-cg", upper="likelihood+0.5*win-rate", win_rate_pairs=8,
                   term2_clip=float("inf"))
    n_members = 3
    expected = [("ift-cg", (0, 1), 10)] * n_members + [("ift-cg", (0,), 8)] * n_members  # session pairs, then reference
    assert [(s[0], s[1], s[2]) for s in seen] == expected
    assert all(s[3] is None for s in seen[:n_members]) and all(s[3] is win_rate_objective for s in seen[n_members:])
    row = rows(tmp_path / "aparl.csv")[0]
    n = float(row["term1_norm"]) ** 2  # Term 1 = 1 * ones + 0.5 * 0
    assert float(row["term2_norm"]) == pytest.approx(2 * math.sqrt(n))  # 1 * ones + 0.5 * (2 * ones)
    assert row["clipped"] == "0" and int(float(row["reference_labels"])) == 8


def test_win_rate_alone_gates_on_halves_of_the_reference_pairs_and_clips_against_the_likelihood(tmp_path,
                                                                                                 monkeypatch):
    seen = []
    _spy(monkeypatch, seen, one_sided=100.0)
    loop = _first_session(tmp_path, hypergrad="ift-cg", upper="win-rate", term2_gate="split-cosine",
                          win_rate_pairs=8, term2_step=0.0)
    estimates = [s for s in seen if s[0] == "ift-cg"]
    assert [(s[1], s[2]) for s in estimates] == [((0,), 4)] * 6  # two halves of the 8 reference pairs, 3 members
    scale = [s for s in seen if s[0] == "none"]  # the likelihood's Term 1 on the session's 10 pairs
    assert [(s[1], s[2], s[3]) for s in scale] == [((0, 1), 10, None)] * 3
    row = rows(tmp_path / "aparl.csv")[0]
    assert row["gate_open"] == "1" and float(row["gate_stat"]) == pytest.approx(1.0)
    # Term 1 (the scale) is the likelihood's ones, not the win rate's zero: Term 2 is clipped to it, not to 0
    assert row["clipped"] == "1" and float(row["cosine"]) == pytest.approx(1.0)
    assert float(row["term2_norm"]) == pytest.approx(100 * float(row["term1_norm"]))
    assert loop.method.counters["queries"] == 18


def test_default_options_keep_the_log_columns(tmp_path):
    loop = _first_session(tmp_path, hypergrad="none")
    assert _header(tmp_path / "aparl.csv") == DEFAULT_APARL_COLUMNS
    assert _header(tmp_path / "feedback.csv") == DEFAULT_FEEDBACK_COLUMNS
    assert loop.method.reference_pairs is None and loop.method.counters["queries"] == 10


def test_bad_upper_strings_and_missing_references_are_refused_before_the_run(tmp_path):
    for bad in ("win-rat", "likelihood+likelihood", "likelihood+-0.5*win-rate", "likelihood,win-rate"):
        with pytest.raises(ConfigError, match=r"a-parl: upper must be one of likelihood, brier, win-rate"):
            APARLMethod.resolve_config({"upper": bad}, "dmc:walker-walk")
    with pytest.raises(ValueError, match="win_rate_reference must be one of random, previous"):
        APARLMethod.resolve_config({"upper": "win-rate", "win_rate_reference": "best"}, "dmc:walker-walk")
    cases = [({}, {"seed_steps": 40}, "hold no complete 50-step segment"),
             ({}, {"replay_capacity": 1500}, "would overwrite them"),
             ({"win_rate_reference": "previous"}, {"replay_capacity": 1500}, "keeps fewer"),
             ({"win_rate_reference": "previous"}, {"steps": 1000}, "no feedback session of this run")]
    for options, run, phrase in cases:
        cfg = feedback_cfg("dmc:walker-walk", "a-parl", upper="win-rate", **options)
        if "seed_steps" in run:
            cfg.sac.seed_steps = run["seed_steps"]
        cfg.steps = run.get("steps", cfg.steps)
        cfg.replay_capacity = run.get("replay_capacity")
        with pytest.raises(ConfigError, match=phrase):
            APARLMethod.check_run(cfg)  # what parl bench checks for every run
        with pytest.raises(ConfigError, match=f"a-parl: win_rate_reference.*{phrase}"):
            train(cfg, tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()  # refused before anything was written
    cfg = feedback_cfg("dmc:walker-walk", "a-parl", upper="likelihood")  # no reference needed
    cfg.sac.seed_steps = 40
    APARLMethod.check_run(cfg)  # does not raise


def test_the_issue_13_grid_spec_validates():
    from parl_deep.sweep.grid import check_spec

    from ..fixtures import REPO

    spec, issues = check_spec(REPO / "benchmarks" / "specs" / "aparl-grid.toml")
    assert issues == [], [str(i) for i in issues]
    win = [j for j in spec.jobs if j.method_name == "a-parl-gated-win-rate"]
    assert len(win) == 15 and all(j.config["method_config"]["upper"] == "win-rate" for j in win)


def test_parl_bench_reports_a_reference_the_run_cannot_have():
    """The same refusal as a spec issue, before any run starts (Method.check_run in the sweep's validation)."""
    from parl_deep.sweep import SpecError, spec_from_text

    text = '''
preset = "cpu"
steps = 3000
seeds = [0]
tasks = ["dmc:walker-walk"]
[train]
eval_every = 1000
checkpoint_every = 1000
[sac]
seed_steps = 40
[[methods]]
name = "wr"
method = "a-parl"
options = { upper = "win-rate", num_unsup_steps = 500, num_interact = 1000, max_feedback = 20, reward_batch = 10 }
'''
    with pytest.raises(SpecError, match="hold no complete 50-step segment"):
        spec_from_text(text)
    spec_from_text(text.replace("seed_steps = 40", "seed_steps = 500"))  # with a long enough random phase: valid


def test_fold_z_splits_every_component_into_the_same_number_of_folds(tmp_path, monkeypatch):
    """10 session pairs and 8 reference pairs in 4 folds: sizes 2, 3, 2, 3 and 2, 2, 2, 2, each fold estimated per
    member. Identical fold estimates make z infinite and open the gate; when the budget leaves fewer reference
    pairs than folds there is no test and no Term 2."""
    seen = []
    _spy(monkeypatch, seen)
    _first_session(tmp_path / "a", hypergrad="ift-cg", upper="likelihood+0.5*win-rate", win_rate_pairs=8,
                   term2_gate="fold-z", gate_folds=4, term2_clip=float("inf"))
    expected = []
    for own, ref in zip((2, 3, 2, 3), (2, 2, 2, 2)):
        expected += [("ift-cg", (0, 1), own)] * 3 + [("ift-cg", (0,), ref)] * 3
    assert [(s[0], s[1], s[2]) for s in seen] == expected
    row = rows(tmp_path / "a" / "aparl.csv")[0]
    assert row["gate_open"] == "1" and float(row["gate_stat"]) == float("inf")
    seen.clear()
    _first_session(tmp_path / "b", hypergrad="ift-cg", upper="likelihood+0.5*win-rate", win_rate_pairs=9,
                   term2_gate="fold-z", gate_folds=9, max_feedback=18)  # 10 own pairs, then 8 reference pairs left
    # (train() and parl bench refuse this run up front, since no session could fill the folds; the same NaN path
    # is what a real run logs when a late session's remaining budget is short)
    row = rows(tmp_path / "b" / "aparl.csv")[0]
    assert row["gate_open"] == "0" and math.isnan(float(row["gate_stat"]))
