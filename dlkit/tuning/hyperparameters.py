"""KerasTuner's ``HyperParameters``: ``hp.Int``, ``hp.Float``, ``hp.Choice``, ``hp.Boolean``, ``hp.Fixed``,
each one a call of an Optuna trial's ``suggest_*``.

Inside a search, ``hp`` wraps the trial: ``hp.Float("lr", 1e-4, 1e-1, sampling="log")`` is
``trial.suggest_float("lr", 1e-4, 1e-1, log=True)``, and anything else of the trial (``hp.number``,
``hp.suggest_float``, ``hp.report`` ...) is the trial's own, so a ``build(trial)`` written for Optuna runs
unchanged. Outside a search (``HyperParameters()``, or the values of the best trial) each call returns
the value it was given, else its default: ``min_value``, the first choice, ``False``.
Nothing here imports Optuna.
"""
from __future__ import annotations

import math
from typing import Any, Optional

_SAMPLINGS = ("linear", "log")


class HyperParameters:
    """KerasTuner's ``HyperParameters``: declares each hyperparameter and returns this trial's value of it.

    Attributes:
        trial: The Optuna trial drawing the values, or ``None`` (then values are looked up or defaulted).
        values: ``{name: value}`` of every hyperparameter declared so far (or given).
        space: ``{name: (kind, args, kwargs)}``: the ``trial.suggest_<kind>(name, *args, **kwargs)`` call of
            each declared hyperparameter; kind ``'fixed'`` for ``Fixed``, which Optuna never sees.

    Args:
        trial: An ``optuna.Trial`` to draw from, or ``None``.
        values: Values to return instead of defaults when there is no trial (e.g. the best trial's).
    """

    def __init__(self, trial: Any = None, values: Optional[dict] = None):
        self.trial = trial
        self.values: dict = dict(values or {})
        self.space: dict = {}

    def Int(self, name: str, min_value: int, max_value: int, step: int = 1, sampling: str = "linear",  # noqa: N802
            default: Optional[int] = None) -> int:
        """An integer in ``[min_value, max_value]`` (both included): ``trial.suggest_int``.

        Args:
            name: The hyperparameter's name, unique in the search.
            min_value: The smallest value.
            max_value: The largest value.
            step: The spacing of the values (``min_value``, ``min_value + step`` ...); 1 with ``'log'``.
            sampling: ``'linear'`` (uniform) or ``'log'`` (log-uniform: ``log=True``).
            default: The value outside a search (default ``min_value``).

        Returns:
            This trial's value.

        Raises:
            ValueError: For an unknown ``sampling``, a log range that is not positive, or a log step.
        """
        log = _log(name, sampling, min_value)
        if log and step != 1:
            raise ValueError(f"hp.Int({name!r}): Optuna samples a log-scaled integer with step=1 only, not {step}.")
        return self._declare(name, "int", min_value if default is None else default, int(min_value),
                             int(max_value), step=int(step), log=log)

    def Float(self, name: str, min_value: float, max_value: float, step: Optional[float] = None,  # noqa: N802
              sampling: str = "linear", default: Optional[float] = None) -> float:
        """A float in ``[min_value, max_value]``: ``trial.suggest_float``.

        Args:
            name: The hyperparameter's name, unique in the search.
            min_value: The smallest value.
            max_value: The largest value.
            step: The spacing of a discrete range, or ``None`` for a continuous one (not with ``'log'``).
            sampling: ``'linear'`` (uniform) or ``'log'`` (log-uniform, for learning rates: ``log=True``).
            default: The value outside a search (default ``min_value``).

        Returns:
            This trial's value.

        Raises:
            ValueError: For an unknown ``sampling``, a log range that is not positive, or a log step.
        """
        log = _log(name, sampling, min_value)
        if log and step is not None:
            raise ValueError(f"hp.Float({name!r}): Optuna cannot sample a log-scaled float with a step.")
        return self._declare(name, "float", min_value if default is None else default, float(min_value),
                             float(max_value), step=None if step is None else float(step), log=log)

    def Choice(self, name: str, values: list, default: Any = None) -> Any:  # noqa: N802
        """One of ``values`` (``None``, bools, ints, floats or strings): ``trial.suggest_categorical``.

        Args:
            name: The hyperparameter's name, unique in the search.
            values: The choices.
            default: The value outside a search (default the first choice).

        Returns:
            This trial's value.

        Raises:
            ValueError: For no choices.
        """
        values = list(values)
        if not values:
            raise ValueError(f"hp.Choice({name!r}) needs at least one value.")
        return self._declare(name, "categorical", values[0] if default is None else default, values)

    def Boolean(self, name: str, default: bool = False) -> bool:  # noqa: N802
        """``True`` or ``False``: ``trial.suggest_categorical(name, [False, True])``.

        Args:
            name: The hyperparameter's name, unique in the search.
            default: The value outside a search.

        Returns:
            This trial's value.
        """
        return self._declare(name, "categorical", default, [False, True])

    def Fixed(self, name: str, value: Any) -> Any:  # noqa: N802
        """A value that is not searched, but recorded with each trial's hyperparameters.

        Args:
            name: The hyperparameter's name.
            value: Its value.

        Returns:
            ``value``.
        """
        self.space[name] = ("fixed", (value,), {})
        self.values[name] = value
        return value

    # Optuna's spellings, so that a ``build(trial)`` written for Optuna declares its space here too.
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        """Optuna's spelling of ``Int``.

        Args:
            name: The hyperparameter's name.
            low: The smallest value.
            high: The largest value.
            step: The spacing of the values.
            log: Log-uniform sampling.

        Returns:
            This trial's value.
        """
        return self.Int(name, low, high, step=step, sampling="log" if log else "linear")

    def suggest_float(self, name: str, low: float, high: float, *, step: Optional[float] = None,
                      log: bool = False) -> float:
        """Optuna's spelling of ``Float``.

        Args:
            name: The hyperparameter's name.
            low: The smallest value.
            high: The largest value.
            step: The spacing of a discrete range, or ``None``.
            log: Log-uniform sampling.

        Returns:
            This trial's value.
        """
        return self.Float(name, low, high, step=step, sampling="log" if log else "linear")

    def suggest_categorical(self, name: str, choices: list) -> Any:
        """Optuna's spelling of ``Choice``.

        Args:
            name: The hyperparameter's name.
            choices: The choices.

        Returns:
            This trial's value.
        """
        return self.Choice(name, choices)

    def get(self, name: str) -> Any:
        """The value of a hyperparameter declared (or given) before.

        Args:
            name: The hyperparameter's name.

        Returns:
            Its value.

        Raises:
            KeyError: For a name never declared.
        """
        if name not in self.values:
            raise KeyError(f"No hyperparameter {name!r}; declared: {sorted(self.values)}.")
        return self.values[name]

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __getattr__(self, name: str) -> Any:
        trial = self.__dict__.get("trial")
        if trial is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(trial, name)  # the trial's own: number, report, should_prune, set_user_attr ...

    def __repr__(self) -> str:
        return f"HyperParameters({self.values})"

    def _declare(self, name: str, kind: str, default: Any, *args, **kwargs) -> Any:
        spec = (kind, args, kwargs)
        if self.space.get(name, spec) != spec:
            raise ValueError(f"Hyperparameter {name!r} is declared twice with different ranges: "
                             f"{self.space[name]} and {spec}.")
        self.space[name] = spec
        if self.trial is not None:
            value = getattr(self.trial, f"suggest_{kind}")(name, *args, **kwargs)
        else:
            value = self.values.get(name, default)
        self.values[name] = value
        return value


def grid(space: dict) -> dict:
    """The grid of ``GridSearch``: every value each searched hyperparameter of ``space`` can take.

    Args:
        space: ``HyperParameters.space``.

    Returns:
        ``{name: [values]}`` for Optuna's ``GridSampler``: a ``Choice``'s choices, a ``Boolean``'s
        ``[False, True]``, an ``Int``'s ``min_value, min_value + step, ... <= max_value``, a stepped
        ``Float``'s likewise. ``Fixed`` values are left out (they are not searched).

    Raises:
        ValueError: For a ``Float`` without a ``step`` (a continuous range has no grid).
    """
    points = {}
    for name, (kind, args, kwargs) in space.items():
        if kind == "categorical":
            points[name] = list(args[0])
        elif kind == "int":
            points[name] = list(range(args[0], args[1] + 1, kwargs["step"]))
        elif kind == "float":
            low, high, step = args[0], args[1], kwargs["step"]
            if step is None:
                raise ValueError(f"GridSearch needs a step for hp.Float({name!r}, ...) (or use hp.Choice): a "
                                 f"continuous range has no grid.")
            count = math.floor((high - low) / step + 1e-9)
            points[name] = [round(low + i * step, 12) for i in range(count + 1)]
    return points


def _log(name: str, sampling: str, min_value: float) -> bool:
    """Whether ``sampling`` is ``'log'``, after checking it and the range it applies to."""
    if sampling not in _SAMPLINGS:
        raise ValueError(f"Hyperparameter {name!r}: sampling must be one of {_SAMPLINGS}, not {sampling!r} "
                         f"(Optuna has no 'reverse_log').")
    if sampling == "log" and min_value <= 0:
        raise ValueError(f"Hyperparameter {name!r}: a log range needs min_value > 0, not {min_value}.")
    return sampling == "log"
