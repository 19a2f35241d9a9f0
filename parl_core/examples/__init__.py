"""The designer problems of the paper's Appendix C as exact bilevel problems, and the tools that solve them.

* :func:`workbench_problem`: example 1, energy-aware workbench placement (eq. 23).
* :func:`tax_problem`: example 2, tax design for social welfare (eq. 24).
* :func:`maze_goal_problem`: example 3, goal placement in an N x N maze.
* :func:`designer_a_parl`, :func:`grid_search`, :func:`compare_routes`: A-PARL, its confirming grid search and
  every hypergradient route at one point.
"""
from .designer import GridSearch, RouteResult, compare_routes, designer_a_parl, grid_search, max_relative_difference
from .maze import maze_goal_problem
from .tax import Economy, household_mdp, tax_problem
from .workbench import arm_mdp, workbench_problem

__all__ = ["maze_goal_problem", "workbench_problem", "arm_mdp", "tax_problem", "household_mdp", "Economy", "designer_a_parl", "grid_search",
           "compare_routes", "max_relative_difference", "GridSearch", "RouteResult"]
