"""parl_deep.sweep.spec and .grid: up-front validation of a spec (every problem named by its field), the shipped
specs, and the --seeds/--tasks/--methods selection."""
from __future__ import annotations

import pytest

from parl_deep.methods import method_names
from parl_deep.sweep import SpecError, check_spec, spec_from_text

BAD_SPECS = [
    # (replacements in tiny.toml, the field the message must name, a phrase of the message)
    ({'"metaworld:door-open"': '"metaworld:door-opne"'}, "tasks[1]", "unknown environment"),
    ({'tasks = ["dmc:walker-walk"': 'tasks = ["walker-walk"'}, "tasks[0]", "prefix"),
    ({'method = "oracle"': 'method = "pebbel"'}, "methods[0].method", "not a registered training method"),
    ({'seeds = [0, 1]\n': ''}, "seeds", "required field is missing"),
    ({'steps = 400': 'steps = -5'}, "steps", "must be a positive integer, got -5"),
    ({'steps = 400': 'steps = 0'}, "steps", "must be a positive integer, got 0"),
    ({'name = "oracle-wide"\nmethod = "oracle"': 'name = "oracle-wide"'}, "methods[1].method", "required field"),
    ({'hidden_dim = 32': 'hidden_dimm = 32'}, "sac.hidden_dimm", "unknown field"),
    ({'eval_every = 100': 'eval_every = "100"'}, "train.eval_every", "must be an integer"),
    ({'eval_every = 100': 'eval_every = 1000'}, "tasks[0] x methods[0]", "larger than steps"),
    ({'seed_steps = 100': 'seed_steps = -1'}, "tasks[0] x methods[0]", "sac.seed_steps must be a non-negative integer"),
    ({'preset = "cpu"': 'preset = "gpu"'}, "preset", "unknown preset"),
    ({'seeds = [0, 1]': 'seeds = [0, -1]'}, "seeds", "non-negative"),
    ({'name = "oracle-wide"': 'name = "oracle"'}, "methods", "distinct"),
    ({'[train]': 'stepz = 3\n[train]'}, "stepz", "unknown field"),
    ({'[train]': '[train]\nseed = 3'}, "train.seed", "set by the spec"),
    ({'sac = { hidden_dim = 64 }': 'options = { not_an_option = 1 }'}, "methods[1].options", "takes no options"),
]


@pytest.mark.parametrize("replace,field,phrase", BAD_SPECS, ids=[b[1] + ":" + b[2][:20] for b in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(tiny_text, replace, field, phrase):
    with pytest.raises(SpecError) as info:
        spec_from_text(tiny_text(**replace))
    assert any(i.field == field and phrase in i.message for i in info.value.issues), str(info.value)
    assert f"{field}: " in str(info.value)


@pytest.mark.parametrize("name", ["paper", "cpu"])
def test_shipped_specs_parse_and_only_unregistered_methods_are_missing(specs, name):
    spec, issues = check_spec(specs / f"{name}.toml")
    assert spec is not None
    assert [t.env for t in spec.tasks] == ["dmc:walker-walk", "metaworld:door-open", "metaworld:button-press-topdown"]
    extra = ["a-parl-no-term2"] if name == "cpu" else []  # the CPU grid's ablation
    assert [m.name for m in spec.methods] == ["oracle", "pebble", "pebble-surf", "a-parl"] + extra
    assert spec.seeds == [0, 1, 2, 3, 4]
    missing = {m.method for m in spec.methods} - set(method_names())
    # Every problem must be an unregistered method, and every unregistered method a problem.
    assert all(i.kind == "unregistered_method" for i in issues), [str(i) for i in issues]
    assert {i.message.split("'")[1] for i in issues} == missing
    if not missing:  # all four methods exist: the whole grid must validate
        assert len(spec.jobs) == 3 * (4 + len(extra)) * 5
    # The oracle part of the grid is valid on its own (`parl bench SPEC --methods oracle`).
    spec, issues = check_spec(specs / f"{name}.toml", methods=["oracle"])
    assert issues == [] and len(spec.jobs) == 3 * 5
    steps = {j.task: j.steps for j in spec.jobs}
    if name == "paper":
        assert steps["dmc:walker-walk"] == 500_000 and spec.jobs[0].config["sac"]["hidden_dim"] == 1024
    else:
        assert set(steps.values()) == {50_000}


def test_seeds_option_keeps_a_subset_in_seed_major_order(specs):
    spec, issues = check_spec(specs / "cpu.toml", seeds=[2, 0])
    assert issues == [] and spec.seeds == [0, 2]
    # Seed-major: the first 15 runs are all of seed 0 (every task x method), then seed 2.
    assert [j.seed for j in spec.jobs] == [0] * 15 + [2] * 15
    assert {(j.task, j.method_name) for j in spec.jobs[:15]} == {(j.task, j.method_name) for j in spec.jobs[15:]}
    full, _ = check_spec(specs / "cpu.toml")
    assert {j.run_id for j in spec.jobs} < {j.run_id for j in full.jobs}  # same run ids: the full grid resumes
    _, issues = check_spec(specs / "cpu.toml", seeds=[0, 9])
    assert [(i.field, "seed 9" in i.message) for i in issues] == [("--seeds", True)]


def test_tasks_and_methods_options_combine(specs):
    spec, issues = check_spec(specs / "cpu.toml", methods=["pebble-surf"], seeds=[1, 2], tasks=["dmc:walker-walk"])
    assert issues == []
    assert [j.run_id for j in spec.jobs] == ["dmc-walker-walk__pebble-surf__s1", "dmc-walker-walk__pebble-surf__s2"]
    _, issues = check_spec(specs / "cpu.toml", tasks=["dmc:walker-run"])
    assert [(i.field, "walker-run" in i.message) for i in issues] == [("--tasks", True)]


def test_tiny_spec_is_valid_and_small(tiny):
    spec, issues = check_spec(tiny)
    assert issues == []
    assert len(spec.jobs) == 8 and {j.steps for j in spec.jobs} == {400}
    assert len({j.run_id for j in spec.jobs}) == 8


@pytest.mark.parametrize("name", ["aparl-tuning", "aparl-tuning-own"])
def test_tuning_specs_validate_and_never_touch_the_reported_seeds(specs, name):
    spec, issues = check_spec(specs / f"{name}.toml")
    assert issues == [], [str(i) for i in issues]
    assert spec.jobs and min(j.seed for j in spec.jobs) >= 10  # seeds 0-4 are reported, never tuned on


def test_the_own_stream_candidate_resolves_to_a_whole_run_window_and_its_own_estimator_stream(specs):
    spec, _ = check_spec(specs / "aparl-tuning-own.toml", methods=["a-parl-fold-z-own"])
    for j in spec.jobs:
        mc = j.config["method_config"]
        assert mc["estimator_rng"] == "own" and mc["term2_gate"] == "fold-z"
        assert mc["query_window"] >= j.steps  # the whole buffer: PEBBLE's queries while the gate stays closed
