"""The results document validates against the schema kept in the repo, and the CLI rejects bad input clearly."""
import json

import jsonschema
import pytest

from validation.report import load_schema
from validation.runner import run_suite


def test_tiny_run_validates_against_schema(tmp_path, tiny_family):
    doc, crashed = run_suite(tmp_path, quick=True, only=["lemma1", "formula_audit"], progress=False,
                             family=tiny_family)
    assert not crashed
    on_disk = json.loads((tmp_path / "results.json").read_text())
    jsonschema.validate(on_disk, load_schema())
    assert [c["name"] for c in on_disk["checks"]] == ["lemma1", "formula_audit"]
    assert on_disk["summary"]["fails"] >= 2  # eq. (16) in both forms
    for ch in on_disk["checks"]:
        for fig in ch["figures"]:
            assert (tmp_path / fig["path"]).stat().st_size > 10_000
    report = (tmp_path / "report.md").read_text()
    assert "## Summary" in report and "![" in report


def test_schema_rejects_a_handwritten_bad_verdict(tmp_path, tiny_family):
    doc, _ = run_suite(tmp_path, quick=True, only=["lemma1"], progress=False, family=tiny_family)
    doc["checks"][0]["claims"][0]["verdict"] = "probably"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, load_schema())
    doc["checks"][0]["claims"][0]["verdict"] = "fails"  # a failure must name its counterexample
    doc["checks"][0]["claims"][0]["counterexample"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, load_schema())


def test_runner_rejects_unknown_check(tmp_path):
    with pytest.raises(ValueError, match="unknown check"):
        run_suite(tmp_path, only=["nope"], progress=False)


