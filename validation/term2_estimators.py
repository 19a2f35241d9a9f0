"""The neural Term 2 estimators of the deep backend, run on a tabular RLHF problem whose exact Term 1 and Term 2
parl_core knows. One home for the check ``term2_noise`` and ``benchmarks/term2_convergence.py``.

The estimators (``soft-bellman``, ``ift-cg``, ``neumann``) receive a batch of pairs of trajectories sampled from
pi*(phi), the compared segments being the first ``case["T"]`` steps and the rest their continuation; they return
the sampled Term 1 = mean grad_phi f and their estimate of Term 2 (docs/theory.md section 5).
"""
from __future__ import annotations

import numpy as np

ESTIMATORS = ("soft-bellman", "ift-cg", "neumann")


def deep_modules():
    """(hypergrad, tabular) modules of parl_deep, imported lazily (the deep backend is optional here)."""
    try:
        from parl_deep.preference import hypergrad, tabular
    except ImportError:
        from parl_deep import hypergrad, tabular
    return hypergrad, tabular


def estimator_options(name: str) -> dict:
    """Options of each estimator on the tabular problem: the exact per-cell regression for soft-bellman, a
    100-iteration cap for the Hessian solves."""
    hypergrad, tabular = deep_modules()
    if name == "soft-bellman":
        return dict(regressor=hypergrad.LinearRegressor(), features=tabular.onehot_cell_features)
    if name in ("ift-cg", "neumann"):
        return dict(max_iter=100)
    raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {name!r}")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """a . b / (|a| |b|) of two estimates; NaN when either is zero (the numpy twin of A-PARL's torch cosine)."""
    d = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / d if d > 0 else float("nan")


def continuation_for(gamma: float, tail: float = 0.01) -> int:
    """Steps of continuation after the segment so that the truncated discount weight gamma^L is at most
    ``tail`` (the Monte Carlo sums of dQ/dphi then miss at most that fraction)."""
    return int(np.ceil(np.log(tail) / np.log(gamma))) if gamma > 0 else 1


def exact_case(seed: int = 0, **options) -> dict:
    """A seeded tabular RLHF problem with its exact Term 1 and Term 2 (``parl_deep``'s ``exact_rlhf_case``)."""
    return deep_modules()[1].exact_rlhf_case(seed, **options)


def run_estimators(case: dict, n_pairs: int, seed: int, names=ESTIMATORS, continuation: int = 40) -> dict:
    """Every estimator in ``names`` on one batch of ``n_pairs`` sampled pairs: {name: Term2Result}."""
    hypergrad, tabular = deep_modules()
    batch = tabular.sample_pair_batch(case["mdp"], case["pi"], case["true"], case["beta"], case["T"],
                                      case["T"] + continuation, n_pairs, np.random.default_rng(seed))
    return {name: hypergrad.estimate(name, case["policy"], case["reward"], batch, temperature=case["lam"],
                                     gamma=case["gamma"], critic=case["critic"], **estimator_options(name))
            for name in names}


def run_parts(case: dict, n_pairs: int, seed: int, parts, continuation: int = 40,
              name: str = "soft-bellman") -> list[np.ndarray]:
    """Term 2 of the estimator ``name`` on one batch of ``n_pairs`` sampled pairs and on each of its ``parts``
    (slices of the pairs, as A-PARL's gates split a session): ``[whole, part_0, part_1, ...]``."""
    from parl_deep.methods.aparl_adapters import sub_batch  # the pairs ``s`` of a batch, as A-PARL takes them

    hypergrad, tabular = deep_modules()
    batch = tabular.sample_pair_batch(case["mdp"], case["pi"], case["true"], case["beta"], case["T"],
                                      case["T"] + continuation, n_pairs, np.random.default_rng(seed))
    subs = [batch] + [sub_batch(batch, s) for s in parts]
    return [hypergrad.estimate(name, case["policy"], case["reward"], b, temperature=case["lam"], gamma=case["gamma"],
                               critic=case["critic"], **estimator_options(name)).term2.detach().numpy() for b in subs]
