"""Evaluation protocols of the course: K-fold and iterated K-fold cross-validation, with the folds'
models trained one after another or side by side in one compiled program.

``cross_validate(build, x, y, folds=5)`` splits the samples into ``folds`` parts; fold ``k`` trains a
fresh trainer from ``build()`` on the other parts and scores it with ``evaluate`` on part ``k``.
What learns from data is fitted on each fold's training part only: every ``Normalization`` layer of
the fresh model is adapted on it (``adapt=True``), and ``preprocess(x_train)`` (a
``TextVectorization``, say) is fitted on it and then applied to all the rows.

Side by side (``parallel=True``), the K initial ``TrainState``s are stacked and ``jax.vmap`` runs
the trainer's pure ``train_step`` on all of them at once, each fold's rows padded and masked
(``dlkit.training.side_by_side``); the scores equal those of the folds one after another to float
rounding.
"""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np

from dlkit import layer_objects
from dlkit.layers.normalization_preprocessing import Normalization
from dlkit.training import data as data_lib
from dlkit.training.side_by_side import fit_members

SPLITS = ("kfold", "stratified", "time")


def fold_indices(n: int, folds: int = 5, repeats: int = 1, shuffle: bool = True, seed: int = 0,
                 split: str = "kfold", y=None) -> list:
    """The ``(train rows, validation rows)`` of every fold, repeat by repeat (numpy, no scikit-learn).

    ``"kfold"``: the rows (shuffled by ``seed`` and the repeat's number when ``shuffle``) cut into
    ``folds`` contiguous parts whose sizes differ by at most one (scikit-learn's ``KFold``);
    ``"stratified"``: each class's rows dealt round-robin over the folds, so every fold holds each
    class's share to within one row (labels, or the argmax of one-hot rows); ``"time"``: fold
    ``k`` validates on the ``k+1``-th of ``folds + 1`` equal blocks of ``n // (folds + 1)`` rows and
    trains on every row before it (scikit-learn's ``TimeSeriesSplit``; never shuffled).

    Args:
      n: the number of samples.
      folds: ``K``, at least 2.
      repeats: ``P``, iterated K-fold: ``P`` different shuffles (needs ``shuffle``; not with ``"time"``).
      shuffle: shuffle the rows before splitting (ignored by ``"time"``).
      seed: the shuffles' seed.
      split: ``"kfold"``, ``"stratified"`` or ``"time"``.
      y: the targets (``"stratified"`` only).

    Returns:
      ``[(train, validation), ...]``, ``P * K`` pairs of sorted int arrays.

    Raises:
      ValueError: for an unknown ``split``, fewer than 2 folds or more folds than rows, or repeats
        that would all be the same split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if not isinstance(folds, (int, np.integer)) or not 2 <= folds <= n:
        raise ValueError(f"folds must be an int from 2 to the number of samples ({n}), got {folds!r}.")
    if repeats != 1 and (split == "time" or not shuffle):
        raise ValueError(f"repeats={repeats} would repeat the same split: iterated K-fold needs shuffle=True and a "
                         f"'kfold' or 'stratified' split.")
    if split == "time":
        size = n // (folds + 1)
        if size == 0:
            raise ValueError(f"split='time' with {folds} folds needs at least {folds + 1} samples, got {n}.")
        return [(np.arange(n - (folds - k) * size), np.arange(n - (folds - k) * size, n - (folds - k - 1) * size))
                for k in range(folds)]
    out = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        order = rng.permutation(n) if shuffle else np.arange(n)
        fold_of = np.empty(n, np.int64)
        if split == "kfold":
            for k, part in enumerate(np.array_split(order, folds)):
                fold_of[part] = k
        else:
            classes = _labels(y)[order]
            ranked = order[np.argsort(classes, kind="stable")]  # each class's rows together, in shuffled order
            fold_of[ranked] = np.arange(n) % folds
        out += [(np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)) for k in range(folds)]
    return out


def _labels(y) -> np.ndarray:
    """Integer classes of targets: labels ``(n,)``/``(n, 1)`` or the argmax of one-hot rows."""
    if y is None or not hasattr(y, "shape"):
        raise ValueError("split='stratified' needs y as one array of labels or one-hot rows.")
    y = np.asarray(y)
    return y.argmax(-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y))


@dataclasses.dataclass
class CrossValidation:
    """What ``cross_validate`` returns: every fold's history and scores, and their summary.

    Args:
      scores: per fold, ``evaluate(return_dict=True)`` on its validation part.
      histories: per fold, ``History.history``: ``{name: [value per epoch]}``, ``val_`` names on its
        validation part.
      folds: per fold, ``(train rows, validation rows)``.
      trainers: per fold, its trained ``Trainer``.
      parallel: whether the folds were trained side by side (vmapped).
    """

    scores: list
    histories: list
    folds: list
    trainers: list
    parallel: bool

    @property
    def mean(self) -> dict:
        """``{metric: (1/F) sum_f s_f}``, the mean over the ``F`` folds (all repeats) of each score."""
        return {k: np.mean([s[k] for s in self.scores], axis=0) for k in self.scores[0]}

    @property
    def std(self) -> dict:
        """``{metric: sqrt(sum_f (s_f - mean)^2 / (F - 1))}``, the sample standard deviation over the folds."""
        return {k: np.std([s[k] for s in self.scores], axis=0, ddof=1) for k in self.scores[0]}

    def mean_history(self, name: str) -> np.ndarray:
        """A log's per-epoch curve averaged over the folds (Chollet's ``average_mae_history``).

        Args:
          name: a history key, e.g. ``"val_mae"``.

        Returns:
          ``[(1/F) sum_f h_f[e] for each epoch e]`` as a numpy array.
        """
        return np.mean([h[name] for h in self.histories], axis=0)

    def __repr__(self) -> str:
        summary = ", ".join(f"{k} {m:.4g} ± {self.std[k]:.2g}" for k, m in self.mean.items() if np.ndim(m) == 0)
        return f"CrossValidation({len(self.scores)} folds{', parallel' if self.parallel else ''}: {summary})"


def cross_validate(build: Callable, x, y, folds: int = 5, repeats: int = 1, shuffle: bool = True, seed: int = 0,
                   split: str = "kfold", parallel: Any = "auto", adapt: Any = True,
                   preprocess: Optional[Callable] = None, **fit_kwargs) -> CrossValidation:
    """K-fold (``repeats=1``) or iterated K-fold cross-validation (Chollet's words), each fold's
    model fresh from ``build``.

    Fold ``f`` trains ``build()`` on its training rows with ``fit(..., validation_data=<its validation
    rows>, verbose=0, **fit_kwargs)`` and is scored by ``evaluate(return_dict=True)`` on its
    validation rows; the result holds the ``F = repeats * folds`` scores, their mean and sample sd.

    Args:
      build: ``build()`` or ``build(x_train)`` returning a fresh ``dlkit.Trainer`` (Keras'
        ``build_model()`` that compiles); ``x_train`` is the fold's training inputs. It must make
        new layers each call: a layer object carries its trained weights into every model.
      x: the inputs (an array, or a tuple/dict of arrays).
      y: the targets.
      folds: ``K``.
      repeats: ``P``: iterated K-fold with ``P`` shuffles.
      shuffle: shuffle the rows before splitting (fit still shuffles each epoch's batches).
      seed: the seed of the splits' shuffles (the trainers keep their own seeds).
      split: ``"kfold"``, ``"stratified"`` (by class) or ``"time"`` (training rows always before the
        validation rows); see ``fold_indices``.
      parallel: ``True`` trains the folds side by side (vmapped, ``side_by_side.fit_members``); ``False``
        one after another; ``"auto"`` side by side where it can (on a CPU if ``AUTO_PARALLEL_ON_CPU``).
      adapt: ``True`` adapts every ``Normalization`` layer of the fresh model (but one given constant
        ``mean``/``variance``) on the fold's training inputs; ``False`` leaves them; or a function
        ``adapt(trainer, x_train)``.
      preprocess: ``preprocess(x_train) -> transform``, fitted on the fold's training inputs; the fold
        then uses ``transform(x)`` for all its rows (e.g. an adapted ``TextVectorization``).
      **fit_kwargs: ``fit``'s arguments (``epochs``, ``batch_size``, ``sample_weight`` of every row …).

    Returns:
      A ``CrossValidation``: ``scores``, ``histories``, ``folds``, ``trainers``, ``mean``, ``std``.

    Raises:
      TypeError: ``build`` returns something that is not a trainer.
      ValueError: bad ``split``/``folds``/``repeats``; ``build`` reuses layer objects across folds;
        ``validation_data``/``validation_split`` given; ``parallel=True`` for what cannot run side by
        side (the reason is named).
    """
    if {"validation_data", "validation_split"} & set(fit_kwargs):
        raise ValueError("cross_validate validates each fold on its held-out part: leave out validation_data and "
                         "validation_split.")
    x, y = data_lib.to_arrays(x, "x"), data_lib.to_arrays(y, "y")
    splits = fold_indices(data_lib.num_samples(x, y), folds, repeats, shuffle, seed, split, y)
    trainers, train, validation = [], [], []
    for rows, held_out in splits:
        xk = x if preprocess is None else data_lib.to_arrays(preprocess(data_lib.take(x, rows))(x), "x")
        trainers.append(fresh_trainer(build, data_lib.take(xk, rows), adapt))
        train.append((xk, y, rows))
        validation.append((xk, y, held_out))
    check_fresh(trainers)
    histories, parallel = fit_members(trainers, train, validation, parallel, **fit_kwargs)
    batch_size = fit_kwargs.get("validation_batch_size") or fit_kwargs.get("batch_size")
    scorer, own = trainers[0], trainers[0].state
    scores = []
    for trainer, (xk, yk, held_out) in zip(trainers, validation):
        if parallel:  # one trainer's compiled test program scores every fold's state (its static fields kept)
            scorer.state = jax.tree.unflatten(jax.tree.structure(own), jax.tree.leaves(trainer.state))
        scores.append((scorer if parallel else trainer).evaluate(
            data_lib.take(xk, held_out), data_lib.take(yk, held_out), batch_size=batch_size, verbose=0,
            return_dict=True))
    scorer.state = own
    return CrossValidation(scores, histories, splits, trainers, parallel)


def fresh_trainer(build: Callable, x_train, adapt: Any = False, argument: Any = None):
    """A trainer from ``build``, its data-fitted layers adapted on ``x_train`` and its state built.

    Args:
      build: ``build()``, or ``build(argument)`` when it takes a parameter (``argument`` defaults
        to ``x_train``).
      x_train: the inputs it will train on.
      adapt: as in ``cross_validate``.
      argument: what a one-parameter ``build`` gets instead of ``x_train`` (a seed, say).

    Returns:
      The built trainer.

    Raises:
      TypeError: ``build`` returned something that is not a trainer.
      ValueError: a ``Normalization`` layer that cannot adapt on ``x_train``.
    """
    takes = any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                for p in inspect.signature(build).parameters.values())
    with warnings.catch_warnings():  # adapt=True adapts the Normalization layers a built model warns about
        if adapt is True:
            warnings.filterwarnings("ignore", "This Normalization layer was neither adapted")
        trainer = build(x_train if argument is None else argument) if takes else build()
    if not all(hasattr(trainer, a) for a in ("fit", "evaluate", "train_step", "state")):
        raise TypeError(f"build() must return a dlkit.Trainer (Keras' compiled model: "
                        f"return dlkit.Trainer(model, optimizer, loss, metrics)), got {type(trainer).__name__}.")
    if callable(adapt):
        adapt(trainer, x_train)
    elif adapt:
        for path, layer in layer_objects.walk(trainer.model):
            if isinstance(layer, Normalization) and (layer.mean is None or layer.adapted):
                if not hasattr(x_train, "shape"):
                    raise ValueError("adapt=True adapts Normalization layers on the inputs, which are several "
                                     "arrays here: pass adapt=fn(trainer, x_train) or adapt=False.")
                try:
                    layer.adapt(x_train)
                except ValueError as error:
                    raise ValueError(f"adapt=True: Normalization {'/'.join(path)!r} cannot adapt on the inputs "
                                     f"({error}); pass adapt=fn(trainer, x_train) or adapt=False.") from error
    trainer.build(x_train)
    return trainer


def check_fresh(trainers: list) -> None:
    """Refuse trainers that share a layer object holding parameters (it would carry one member's
    training into the next, as a Keras layer object does).

    Args:
      trainers: built trainers.

    Raises:
      ValueError: a layer object with parameters is in two of them (named).
    """
    seen: dict = {}
    for i, trainer in enumerate(trainers):
        for path, layer in layer_objects.walk(trainer.model):
            if "params" in layer_objects.subtree(trainer.state.variables, path):
                first = seen.setdefault(id(layer), (i, layer))[0]
                if first != i:
                    raise ValueError(f"build() returned models {first} and {i} sharing the layer object "
                                     f"{'/'.join(path) or 'the model'!r}, whose weights would carry over: make new "
                                     f"layers (and a new model) inside build().")
