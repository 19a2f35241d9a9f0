"""The checks of ``parl verify``, in the order they run. Each module defines ``run(ctx, ...) -> CheckResult``
whose keyword arguments inject the thing under test (a formula, a constant, a hypergradient)."""
from __future__ import annotations

import importlib

CHECKS: dict[str, str] = {
    "formula_audit": "Formula audit: eqs. (15)-(17) against automatic differentiation",
    "lemma1": "Lemma 1: trajectory divergence is Lipschitz in theta",
    "lemma2": "Lemma 2: linear convergence of the lower-level policy gradient",
    "lemma34": "Lemmas 3 and 4: second-order bounds and the plug-in hypergradient error",
    "theorem1": "Theorem 1: O(1/T) rate of A-PARL with exact oracles",
    "hypergradient": "Hypergradient accuracy and cost against temperature",
    "rlhf": "RLHF special case: A-PARL against the loop that drops Term 2",
    "rlhf_truth": "Eq. (5) at the true reward: stationarity per score and the entropy gain",
    "rlhf_objectives": "Upper objectives: A-PARL against the loop that drops Term 2, per family",
    "term2_noise": "Sampled Term 2 of the deep estimators against the exact Term 2",
    "term2_gate": "A-PARL's Term 2 gates on noise and on signal",
}


def get(name: str):
    if name not in CHECKS:
        raise KeyError(name)
    return importlib.import_module(f"validation.checks.{name}")
