"""parl_core: the exact tabular/softmax engine of PARL (ICLR 2024).

Public API (stable): TabularMDP, LinearReward, SoftLowerLevel, AdditiveUtility, PreferenceObjective (scores
"likelihood", "excess_kl", "brier"), WinRateObjective, WeightedObjective,
BilevelProblem, trajectory_divergence, and the hypergradient method strings
"soft_bellman", "ift", "finite_difference", "unrolled". Theorem 1's rate as a measurement: run_convergence,
fit_rate, plot_rate (``parl_core.convergence``). Hypothesis strategies for property tests live in
``parl_core.strategies`` (imported on demand, not here).
"""
from .apar import (APARLHistory, ExactMonitor, ExactPolicyGradient, PluginHypergradient, a_parl, schedule)
from .convergence import ConvergenceTrace, RateFit, fit_rate, plot_rate, run_convergence
from .bilevel import METHODS, BilevelProblem, quadratic_regularizer
from .divergence import trajectory_divergence
from .lower import SoftLowerLevel
from .mdp import TabularMDP, chain, garnet, gridworld
from .policy import gauge, softmax
from .rewards import CallableReward, LinearReward
from .trajectories import EnumerationTooLarge, enumerate_trajectories
from .preference import LikelihoodParts, PreferenceObjective, WinRateObjective
from .upper import AdditiveUtility, WeightedObjective

__all__ = [
    "TabularMDP", "LinearReward", "CallableReward", "SoftLowerLevel", "AdditiveUtility", "PreferenceObjective",
    "BilevelProblem", "trajectory_divergence", "METHODS", "quadratic_regularizer", "garnet", "chain",
    "gridworld", "softmax", "gauge", "enumerate_trajectories", "EnumerationTooLarge", "a_parl", "schedule",
    "APARLHistory", "ExactPolicyGradient", "PluginHypergradient", "ExactMonitor",
    "WinRateObjective", "WeightedObjective", "LikelihoodParts",
    "run_convergence", "fit_rate", "plot_rate", "ConvergenceTrace", "RateFit",
]
