"""Published feedback settings of PEBBLE and PEBBLE+SURF per task (the defaults of their method options).

Every value can be overridden (``parl train --max-feedback ... --set method_config.key=value``). Sources:
B-Pref/PEBBLE's released run scripts (rll-research/BPref, ``scripts/<task>/<budget>/<teacher>/run_PEBBLE.sh``
and ``config/train_PEBBLE.yaml``), SURF's README and config (alinlab/SURF), the PEBBLE paper for budgets
without a script:

=================  =========  ============  ============  =============  ===========================
task               unsup      num_interact  max_feedback  reward_batch   reward_update (PEBBLE/SURF)
=================  =========  ============  ============  =============  ===========================
dmc:walker-walk    9000       20000         1000 (*)      100            50 / 1000
  budget 500                                500           50
  budget 100                                100           10
metaworld:*        9000       5000          10000         50             10 / 20
  button-press                              20000         100
  sweep-into                                10000         50
  hammer                                    10000         50
  door-open                                 4000 (**)     20 (**)
other DMC tasks    9000       20000         1000          100            50 / 1000  (walker's values)
=================  =========  ============  ============  =============  ===========================

(*) When only ``max_feedback`` is given, ``reward_batch`` is the published batch for that budget on that
task if there is one, else ``max_feedback / 10`` (DMC) or ``max_feedback / 200`` (Meta-World), the ratios
of every published script. (**) door-open has no released script: the budget is the PEBBLE paper's, the
batch follows the Meta-World ratio. SURF: walker ``mu = 4``, ``inv_label_ratio = 100``; Meta-World
``mu = 4``, ``inv_label_ratio = 10``; ``tau = 0.99`` (both READMEs), ``lam = 1``. Common values:
``segment = 50``, ``large_batch = 10``, ``feed_type = disagreement``, ensemble of 3 MLPs 256x3 (tanh
output), reward lr 3e-4, reward minibatch 128, ``reset_update = 100``, k = 5 (``topK``).
"""
from __future__ import annotations

from typing import Any

from parl_deep.envs import suite_of

__all__ = ["task_preset"]

# Published feedback settings (see the module docstring for sources).
_WALKER_BUDGETS = {100: 10, 500: 50, 1000: 100}  # max_feedback -> reward_batch (SURF README; BPref scripts)
_METAWORLD_TASKS = {  # task -> (max_feedback, reward_batch)
    "button-press": (20000, 100),  # BPref scripts/button_press/20000
    "sweep-into": (10000, 50),  # BPref scripts/sweep_into/10000
    "hammer": (10000, 50),  # SURF README
    "door-open": (4000, 20),  # PEBBLE paper budget; batch = budget / 200 (no released script)
}
_METAWORLD_BUDGETS = {  # (task, max_feedback) -> reward_batch, from the released scripts
    ("button-press", 10000): 50, ("button-press", 20000): 100,
    ("sweep-into", 10000): 50, ("sweep-into", 20000): 100,
    ("hammer", 10000): 50,
}


def task_preset(env: str, method: str = "pebble", max_feedback: int | None = None) -> dict[str, Any]:
    """Published feedback settings for ``env`` (a ``TrainConfig.env`` name) and ``method``.

    ``max_feedback`` (if the user sets it) selects the published per-session batch for that budget, or the
    published ratio when that budget has no script.
    """
    surf = method == "pebble-surf"
    if suite_of(env) == "metaworld":
        task = env.split(":", 1)[1]
        budget, batch = _METAWORLD_TASKS.get(task, (10000, 50))
        if max_feedback is not None:
            budget = int(max_feedback)
            batch = _METAWORLD_BUDGETS.get((task, budget), max(1, budget // 200))
        out = dict(num_unsup_steps=9000, num_interact=5000, max_feedback=budget, reward_batch=batch,
                   reward_update=20 if surf else 10)
        if surf:
            out.update(mu=4, inv_label_ratio=10, tau=0.99)
        return out
    budget = 1000 if max_feedback is None else int(max_feedback)
    batch = _WALKER_BUDGETS.get(budget, max(1, budget // 10))
    out = dict(num_unsup_steps=9000, num_interact=20000, max_feedback=budget, reward_batch=batch,
               reward_update=1000 if surf else 50)
    if surf:
        out.update(mu=4, inv_label_ratio=100, tau=0.99)
    return out
