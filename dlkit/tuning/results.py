"""A search's results as a table: one row per trial, a pandas ``DataFrame`` when pandas is installed."""
from __future__ import annotations

from collections.abc import Callable

from dlkit.tuning.objective import Objective


def rows(study, objective: Objective) -> list:
    """One dict per trial of ``study``, in trial order.

    Args:
        study: The ``optuna.Study``.
        objective: The search's objective (names the score's column; picks a pruned trial's best value).

    Returns:
        Dicts of ``trial``, ``state``, the objective's name (the trial's score; for a pruned trial its best
        reported value; ``None`` for a failed one), each hyperparameter, ``epochs``, ``seconds``, ``error``.
    """
    found = []
    for trial in study.trials:
        state = trial.state.name
        if state == "COMPLETE":
            score = trial.value
        elif state == "PRUNED" and trial.intermediate_values:
            score = objective.best(trial.intermediate_values.values())
        else:
            score = None
        found.append({"trial": trial.number, "state": state, objective.name: score, **trial.params,
                      **trial.user_attrs.get("fixed", {}), "epochs": trial.user_attrs.get("epochs"),
                      "seconds": trial.user_attrs.get("seconds"), "error": trial.user_attrs.get("error")})
    return found


def table(found: list):
    """``found`` as a pandas ``DataFrame`` (indexed by trial), or as it is without pandas.

    Args:
        found: ``rows(...)``.

    Returns:
        A ``DataFrame``, or the list of dicts.
    """
    try:
        import pandas
    except ImportError:
        return found
    return pandas.DataFrame(found).set_index("trial") if found else pandas.DataFrame(found)


def summary(found: list, objective: Objective, num_trials: int, print_fn: Callable = print) -> None:
    """Print the best ``num_trials`` scored trials of ``found``, best first, as aligned columns.

    Args:
        found: ``rows(...)``.
        objective: The search's objective.
        num_trials: How many trials to show.
        print_fn: Where each line goes.
    """
    scored = [row for row in found if row[objective.name] is not None]
    scored.sort(key=lambda row: row[objective.name], reverse=objective.direction == "max")
    states = [row["state"] for row in found]
    print_fn(f"Results summary: {objective}; {states.count('COMPLETE')} trials complete, "
             f"{states.count('PRUNED')} pruned, {states.count('FAIL')} failed.")
    if not scored:
        return
    shown = scored[:num_trials]
    print_fn(f"Showing the {len(shown)} best:")
    columns = list(dict.fromkeys(name for row in shown for name in row if name != "error"))
    cells = [[_cell(row.get(name)) for name in columns] for row in shown]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    for line in [columns, *cells]:
        print_fn("  ".join(text.rjust(width) for text, width in zip(line, widths)))


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
