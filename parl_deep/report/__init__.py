"""``parl report DIR``: statistics, tables and figures for a ``parl bench`` directory.

What is computed (every choice here is also written at the top of the report's ``summary.md``):

Score. ``--metric return`` (default): the ground-truth episodic return of the deterministic policy (eval.csv's
``return_mean``) on every task, as in the paper's Figure 2. ``--metric success``: the success rate on Meta-World
tasks (PEBBLE's usual Meta-World metric) and the return on DMC tasks. The *final score* of a run is its last
evaluation (at the run's last step); only finished runs enter final scores and sample efficiency, while the
learning curves also draw unfinished runs up to where they are.

Normalisation (aggregates only). Scores are divided, task by task, by the oracle's final IQM on that task (so
1.0 = the oracle's level; the oracle is the method labelled ``oracle``, or ``--oracle LABEL``). Without oracle
runs the aggregates use raw scores; a task whose oracle IQM is not positive is left out of the aggregates (and
said so). Per-task tables are always raw.

Aggregates (rliable). For each method a (runs x tasks) matrix of normalised final scores, over the seeds that
finished on every aggregated task. Interquartile mean (IQM: the 25%-trimmed mean of all runs x tasks scores,
``rliable.metrics.aggregate_iqm``), mean and median of the per-task means, each with a 95% stratified-bootstrap
confidence interval (``rliable.library.get_interval_estimates``, percentile method, ``--reps`` resamples of the
runs within each task). Probability of improvement P(X > Y) (``rliable.metrics.probability_of_improvement``: per
task the Mann-Whitney statistic over all pairs of runs, ties counting one half, averaged over tasks) with a 95%
stratified independent-bootstrap interval, for every pair of methods.

Per-task final scores: mean over seeds with a 95% percentile-bootstrap interval over seeds, IQM, median, std.

Learning curves (Figure 2 style): one panel per task, one line per method: the mean over seeds at each
evaluation step, with a 95% percentile-bootstrap band of that mean over seeds (drawn where at least 2 seeds
have the step).

Sample efficiency. Threshold per task: ``--fraction`` (default 0.8) x the final IQM, on that task, of the
reference method: the oracle by default, or ``--threshold-ref LABEL`` (``--threshold-ref pebble --fraction 1``:
the steps each method needs to reach PEBBLE's final return). For
each finished run: the first evaluation step at which its score curve reaches the threshold; by default the raw
curve (each point is already a mean over ``eval_episodes`` episodes), ``--smooth W`` uses a trailing mean over W
evaluations. A run that never reaches it is *censored*: reported as "> its last step", and counted at its last
step in means and ratios (so a ratio with censored runs is a bound, flagged in the table). Ratio A/B
(``--compare A:B``, default ``a-parl:pebble``): mean steps of A over mean steps of B, per task, with a 95%
percentile-bootstrap interval (seeds resampled independently within each method); "all tasks" is the geometric
mean of the per-task ratios (same bootstrap, all tasks resampled together). ``1 - ratio`` is the fraction of
samples saved: the quantity behind the paper's "up to 63% fewer samples". Several comparisons at once:
``--compare A:B,C:B``, or ``--compare '*:B'`` for every method against B; ``sample_efficiency_ratio.png`` draws
them all on a log axis.

Reproducibility: every bootstrap is seeded (``--seed``). The per-task intervals (final scores, steps ratios) each
draw from a generator of the seed and the cell's labels (:func:`~parl_deep.report.stats.cell_rng`), so they do not
move when other runs or comparisons join; rliable draws from numpy's global generator, which is seeded too.

Modules: :mod:`~parl_deep.report.load` (reading the run directories), :mod:`~parl_deep.report.stats` (every
number above, :func:`analyse`), :mod:`~parl_deep.report.diagnostics` (the per-session logs),
:mod:`~parl_deep.report.reproduce` (a rerun against a published ``report.json``, ``--against``),
:mod:`~parl_deep.report.figures` and :mod:`~parl_deep.report.tables` (what is written, :func:`write_report`).
"""
from __future__ import annotations

from parl_deep.report.diagnostics import (APARL_DIAGNOSTICS, FEEDBACK_DIAGNOSTICS, aparl_diagnostics,
                                          feedback_diagnostics)
from parl_deep.report.figures import plot_aggregates, plot_learning_curves, plot_ratios, ratio_forest_rows
from parl_deep.report.load import ReportError, Run, load_runs
from parl_deep.report.stats import (METRICS, analyse, bootstrap_mean_ci, import_rliable, smooth_curve,
                                    steps_to_threshold)
from parl_deep.report.tables import markdown_summary, write_report

__all__ = ["METRICS", "APARL_DIAGNOSTICS", "FEEDBACK_DIAGNOSTICS", "ReportError", "Run", "load_runs", "analyse",
           "bootstrap_mean_ci", "smooth_curve", "steps_to_threshold", "import_rliable", "aparl_diagnostics",
           "feedback_diagnostics", "plot_learning_curves", "plot_aggregates", "plot_ratios", "ratio_forest_rows",
           "markdown_summary", "write_report"]
