"""parl_deep.sweep.rundirs: run directories in --out must hold the spec's configuration (only a larger number
of steps is accepted); a conflict stops the sweep before anything is written."""
from __future__ import annotations

import json

import pytest

from parl_deep.sweep import SpecError, check_existing_runs, run_dir_for, run_sweep, spec_from_text


def test_existing_run_with_another_config_is_rejected_up_front(tmp_path, tiny_text, run_ids):
    spec = spec_from_text(tiny_text())
    job = spec.jobs[0]
    rd = run_dir_for(tmp_path, job.run_id)
    rd.mkdir(parents=True)
    other = json.loads(json.dumps(job.config))
    other["sac"]["hidden_dim"] = 999
    (rd / "config.json").write_text(json.dumps(other))
    with pytest.raises(SpecError) as info:
        run_sweep(spec, tmp_path)
    (issue,) = info.value.issues
    assert issue.kind == "conflict" and issue.field == f"runs/{job.run_id}" and "sac.hidden_dim" in issue.message
    assert run_ids(tmp_path) == [job.run_id] and not (tmp_path / "sweep.json").exists()


def test_an_existing_run_may_be_extended_but_not_shortened(tmp_path, tiny_text):
    spec = spec_from_text(tiny_text())
    job = spec.jobs[0]
    rd = run_dir_for(tmp_path, job.run_id)
    rd.mkdir(parents=True)
    for old_steps, ok in ((job.steps, True), (job.steps - 100, True), (job.steps + 100, False)):
        (rd / "config.json").write_text(json.dumps({**job.config, "steps": old_steps}))
        issues = check_existing_runs(tmp_path, spec.jobs)
        assert (issues == []) == ok, (old_steps, [str(i) for i in issues])
        if not ok:
            assert "differs in: steps" in issues[0].message
