"""What a search optimizes: KerasTuner's ``Objective`` read from a ``History``, and the callback that
reports it to the Optuna trial each epoch so that a bad trial is pruned early."""
from __future__ import annotations

import math
import warnings
from typing import Any, Optional

from dlkit.callbacks.base import Callback
from dlkit.callbacks.monitor import auto_mode

_DIRECTIONS = {"min": "min", "minimize": "min", "max": "max", "maximize": "max"}


def import_optuna():
    """Import Optuna, which ``dlkit.tuning`` runs on and dlkit does not require.

    Returns:
        The ``optuna`` module.

    Raises:
        ImportError: If Optuna is not installed, saying how to install it.
    """
    try:
        import optuna
    except ImportError as error:
        raise ImportError('dlkit.tuning searches with Optuna, which is not installed: pip install "dlkit[tuning]" '
                          '(or pip install optuna).') from error
    return optuna


class Objective:
    """KerasTuner's ``Objective(name, direction)``: the logged quantity a search optimizes.

    A trial's score is the best epoch's value (as in KerasTuner), over the epochs where it is finite.

    Attributes:
        name: The ``History`` key, e.g. ``'val_loss'``.
        direction: ``'min'`` or ``'max'``.

    Args:
        name: The ``History`` key.
        direction: ``'min'``/``'minimize'`` or ``'max'``/``'maximize'``; ``None`` picks by name as
            ``EarlyStopping(mode='auto')`` does (``'max'`` for accuracy-like names).

    Raises:
        ValueError: For another direction.
    """

    def __init__(self, name: str, direction: Optional[str] = None):
        if direction is not None and direction not in _DIRECTIONS:
            raise ValueError(f"Objective({name!r}): direction must be 'min' or 'max', not {direction!r}.")
        self.name = name
        self.direction = auto_mode(name) if direction is None else _DIRECTIONS[direction]

    @property
    def study_direction(self) -> str:
        """Optuna's word for the direction: ``'minimize'`` or ``'maximize'``."""
        return "minimize" if self.direction == "min" else "maximize"

    def best(self, values) -> float:
        """The best finite value of ``values`` in this direction, or NaN if none is finite.

        Args:
            values: Numbers (each epoch's value).

        Returns:
            The best of them, as a float.
        """
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not finite:
            return math.nan
        return min(finite) if self.direction == "min" else max(finite)

    def score(self, result: Any) -> float:
        """A trial's score from what its fit returned.

        Args:
            result: A ``History``, a ``{name: value or [values per epoch]}`` dict, or the score itself.

        Returns:
            The best finite epoch value of ``name``.

        Raises:
            TypeError: If ``result`` is ``None``.
            KeyError: If ``result`` does not log ``name``.
            FloatingPointError: If ``name`` is never finite (the training diverged): the trial fails.
        """
        if result is None:
            raise TypeError("The trial's fit returned None: return the History (or the objective's value).")
        logs = getattr(result, "history", result)
        if isinstance(logs, dict):
            if self.name not in logs:
                raise KeyError(f"The objective {self.name!r} is not in the trial's logs {sorted(logs)}: pass "
                               f"validation_split= or validation_data= to search() for a 'val_' objective.")
            logs = logs[self.name]
        values = logs if isinstance(logs, (list, tuple)) else [logs]
        value = self.best(values)
        if math.isnan(value):
            raise FloatingPointError(f"{self.name} was never finite ({values}): the training diverged.")
        return value

    def __repr__(self) -> str:
        return f"Objective(name={self.name!r}, direction={self.direction!r})"


def as_objective(objective: Any) -> Objective:
    """KerasTuner's ``objective=`` argument as an ``Objective``.

    Args:
        objective: An ``Objective`` or a ``History`` key (its direction picked by name).

    Returns:
        The ``Objective``.
    """
    return objective if isinstance(objective, Objective) else Objective(str(objective))


class PruningCallback(Callback):
    """Reports ``monitor`` to an Optuna trial at each epoch's end and stops ``fit`` when the trial's pruner
    says the trial is hopeless (``trial.should_prune()``); the last epoch is reported but not pruned, as
    stopping there would save nothing.

    The tuners add one to each trial's ``fit`` and mark a stopped trial pruned. In your own Optuna
    objective, raise ``optuna.TrialPruned()`` after ``fit`` when ``callback.pruned``.

    Attributes:
        pruned_epoch: The 0-based epoch after which the trial was pruned, or ``None``.

    Args:
        trial: The ``optuna.Trial`` (or a ``HyperParameters`` wrapping one).
        monitor: The logs key reported, e.g. ``'val_loss'``.
    """

    def __init__(self, trial: Any, monitor: str = "val_loss"):
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.pruned_epoch: Optional[int] = None

    @property
    def pruned(self) -> bool:
        """Whether this callback stopped the training."""
        return self.pruned_epoch is not None

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self.pruned_epoch = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"PruningCallback: {self.monitor!r} is not in the logs {sorted(logs or {})}; nothing "
                          f"is reported, so the trial cannot be pruned.", stacklevel=2)
            return
        self.trial.report(float(value), step=epoch)
        last = epoch + 1 >= (self.params.get("epochs") or 0)  # pruning the last epoch would save nothing
        if not last and self.trial.should_prune():
            self.pruned_epoch = epoch
            self.model.stop_training = True
