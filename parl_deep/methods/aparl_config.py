"""A-PARL's options (``parl train --method a-parl``): PEBBLE's, plus the Term 2 estimator's and the upper
objective's (:mod:`parl_deep.methods.aparl`). Each field's docstring is its ``--help`` text."""
from __future__ import annotations

from dataclasses import dataclass

from parl_deep.fields import opt
from parl_deep.methods.pebble import PEBBLEConfig
from parl_deep.preference.gate import GATES, MAX_ALPHA, parts_needed
from parl_deep.preference.hypergrad import ESTIMATORS
from parl_deep.preference.win_rate import REFERENCE_TERMS, REFERENCES, parse_upper

__all__ = ["APARLConfig"]


@dataclass
class APARLConfig(PEBBLEConfig):
    """PEBBLE's options plus the Term 2 estimator's. ``query_window`` None means ``num_interact``."""

    hypergrad: str = opt("soft-bellman", choices=ESTIMATORS, flag=True)
    """Term 2 estimator (none: drop Term 2, i.e. PEBBLE's update on the recent window)"""
    term2_step: float = opt(1e-2, low=0.0, flag=True)
    """step size of the ascent step along Term 2 after each reward round"""
    term2_clip: float = opt(1.0, low=0.0)
    """scale each member's Term 2 down to at most this times its Term 1 norm (with upper = win-rate alone, whose
    Term 1 is zero: the likelihood's Term 1 on the session's labelled pairs; inf: no clipping)"""
    continuation: int = opt(200, low=0)
    """steps after a segment, in the same episode, summed for the Monte Carlo psi = dQ/dphi"""
    policy_samples: int = opt(4, low=1)
    """reparameterised actions per state for expectations under the policy"""
    cg_iters: int = opt(20, low=1)
    """conjugate-gradient iterations of ift-cg"""
    neumann_terms: int = opt(20, low=1)
    """terms of the Neumann series of neumann"""
    damping: float = opt(1e-2, low=0.0)
    """damping added to the policy Hessian (ift-cg, neumann)"""
    regressor_hidden: int = opt(64, low=1)
    """hidden width of soft-bellman's MLP regressor"""
    regressor_epochs: int = opt(30, low=1)
    """training epochs of soft-bellman's MLP regressor"""
    term2_center: bool = False
    """soft-bellman: centre the advantages at each segment step over the batch, a control variate that removes
    most of the estimate's noise at discounts near 1 and moves its mean by O(1/pairs)"""
    upper: str = opt("likelihood", flag=True)
    """upper objective whose Term 2 is added: likelihood (eq. 5); brier, -(P_phi - y)^2, a proper score whose exact
    form is stationary at the true reward (parl verify rlhf_truth); win-rate (eqs. 3-4), the probability that the
    teacher prefers a segment of the current policy to a reference segment (Term 1 zero; extra queries, see
    win_rate_pairs); or a weighted sum such as likelihood+0.5*win-rate. The reward round stays Bradley-Terry"""
    win_rate_pairs: int | None = opt(None, low=1)
    """with win-rate: teacher queries per session on (recent segment, reference segment) pairs, asked after the
    session's reward_batch and counted against max_feedback (null: reward_batch)"""
    win_rate_reference: str = opt("random", choices=REFERENCES)
    """with win-rate, where reference segments come from: random (the sac.seed_steps random-action steps at the
    start of the run) or previous (the query_window steps before the current window: the previous iteration's
    policy; a session without such a segment asks no reference pairs)"""
    win_rate_fit: bool = True
    """with win-rate: also add the labelled reference pairs to the dataset of the Bradley-Terry reward round
    (false: they only score the policy)"""
    term2_gate: str = opt("off", choices=GATES, flag=True)
    """ascend Term 2 only when a signal test on disjoint parts of the pairs passes, otherwise the update is exactly
    PEBBLE's: split-cosine, the cosine of the two halves' estimates above gate_threshold (fooled by low-rank noise);
    fold-z, z = K |mean|^2 / s^2 over gate_folds folds above the 1 - gate_alpha quantile of F(1, K - 1)
    (parl_deep.preference.gate); off: always ascend"""
    gate_threshold: float = opt(0.2, low=-1.0, high=1.0)
    """the split-cosine gate opens above this cosine between the half-batch Term 2 estimates"""
    gate_folds: int = opt(5, low=2)
    """fold-z: folds K of the session's pairs (each component's pairs split alike; a session with fewer pairs than
    folds ascends nothing)"""
    gate_alpha: float = opt(0.05, low=0.0, high=MAX_ALPHA, low_open=True)
    """fold-z: the level of the test, its opening rate under rank-one zero-mean noise (at most 0.1: above, noise
    of high rank opens it more often than that)"""
    term2_scale: str = opt("clip", choices=("clip", "trust-region"), flag=True)
    """clip: Term 2 scaled to at most term2_clip times |Term 1|; trust-region: the ascent step scaled so that the
    RMS change of r_phi over the batch's segment steps is at most trust_radius"""
    trust_radius: float = opt(0.05, low=0.0, low_open=True)
    """largest RMS change of r_phi per Term 2 step (term2_scale = trust-region)"""
    estimator_rng: str = opt("shared", choices=("shared", "own"))
    """randomness of the Term 2 estimator (policy samples, soft-bellman's regressor): shared draws from the run's
    streams, so even a closed gate's estimate moves what SAC and the queries draw next; own draws from a stream of
    its own and leaves every other stream as it was before the estimate (with query_window at least the run's
    steps and no win-rate term, a run is PEBBLE's until its gate first opens: docs/aparl.md)"""
    psi_discount: float | None = opt(None, low=0.0, high=1.0)
    """discount of the Monte Carlo reward-gradient sums psi = dQ/dphi (null: SAC's discount; shorter is lower
    variance and biased)"""

    @classmethod
    def method_name(cls) -> str:
        return "a-parl"

    def validate(self) -> None:
        super().validate()
        if self.reward_device != "cpu":
            raise ValueError("a-parl: reward_device must be 'cpu' (the ensemble follows the run's device, which the "
                             "Term 2 estimators share with SAC; use --device)")
        parse_upper(self.upper, f"{self.method_name()}: ")

    def gate_part_problems(self) -> list[str]:
        """Why no session of a run with these (merged, preset-resolved) options could fill the gate's parts, or [].
        Each component is split alike: the session's own pairs (likelihood, brier) number at most
        min(reward_batch, max_feedback); the reference pairs (win-rate) at most what the first session's own
        queries leave of max_feedback, and win_rate_pairs. With fewer pairs than parts every gate decision is NaN
        and closed: a run that is PEBBLE without saying so. A late session that the budget shortens is still
        possible; it logs NaN."""
        need = parts_needed(self.term2_gate, self.gate_folds)
        own = min(self.reward_batch, self.max_feedback)
        sizes = {}
        if any(name not in REFERENCE_TERMS for name, _ in self.upper_terms):
            sizes["the session's pairs, min(reward_batch, max_feedback)"] = own
        if self.wants_reference:
            sizes["the reference pairs, min(win_rate_pairs, max_feedback - reward_batch)"] = \
                min(self.win_rate_pairs or self.reward_batch, self.max_feedback - own)
        parts = f"gate_folds = {need} folds" if self.term2_gate == "fold-z" else "2 halves"
        return [f"term2_gate = {self.term2_gate} splits each component into {parts}, more than {what} = {n}; lower "
                f"gate_folds or raise the batch" for what, n in sizes.items() if n < need]

    @property
    def upper_terms(self) -> tuple[tuple[str, float], ...]:
        """``((name, weight), ...)`` of ``upper``."""
        return parse_upper(self.upper)

    @property
    def wants_reference(self) -> bool:
        """Whether ``upper`` has a term scored against reference segments (win-rate)."""
        return any(name in REFERENCE_TERMS for name, _ in self.upper_terms)
