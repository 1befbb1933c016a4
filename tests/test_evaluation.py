"""K-fold and iterated K-fold cross-validation (``dlkit.evaluation``) and ensembles (``dlkit.models.ensemble``):
the splits, no validation statistic reaching training, folds side by side equal to folds one after
another, and ensembles' averages, votes and log-loss."""
import chex
import numpy as np
import pytest
from sklearn import model_selection
from sklearn.datasets import load_diabetes

import dlkit
from dlkit import evaluation, layers
from dlkit.models import Ensemble, ensemble_predict, train_seed_ensemble


def diabetes():
    x, y = load_diabetes(return_X_y=True)
    return x.astype(np.float32), (y / 100.0).astype(np.float32)


def regressor(dropout: float = 0.0):
    model = dlkit.Sequential([dlkit.Input((10,)), layers.Normalization(), layers.Dense(16, "relu"),
                              layers.Dropout(dropout), layers.Dense(1)])
    return dlkit.Trainer(model, "rmsprop", "mse", metrics=["mae"])


def classifier(seed=0, width=16, activation="softmax"):
    model = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(width, "relu"), layers.Dense(10, activation)])
    return dlkit.Trainer(model, "adam", "sparse_categorical_crossentropy", metrics=["accuracy"], seed=seed)


def log_loss(p, y):
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))))


# ---------------------------------------------------------------------- the splits
def test_splits_partition_the_rows_as_scikit_learn_does():
    n, y = 103, np.random.default_rng(0).integers(0, 3, 103)
    plain = evaluation.fold_indices(n, 5, shuffle=False)
    for (train, val), (sk_train, sk_val) in zip(plain, model_selection.KFold(5).split(np.zeros(n))):
        np.testing.assert_array_equal(train, sk_train)
        np.testing.assert_array_equal(val, sk_val)
    timed = evaluation.fold_indices(n, 4, split="time")
    for (train, val), (sk_train, sk_val) in zip(timed, model_selection.TimeSeriesSplit(4).split(np.zeros(n))):
        np.testing.assert_array_equal(train, sk_train)
        np.testing.assert_array_equal(val, sk_val)
        assert train.max() < val.min()  # training strictly before validation
    iterated = evaluation.fold_indices(n, 5, repeats=3, seed=1, split="stratified", y=y)
    assert len(iterated) == 15
    for repeat in range(3):
        folds = iterated[5 * repeat:5 * repeat + 5]
        np.testing.assert_array_equal(np.sort(np.concatenate([v for _, v in folds])), np.arange(n))
        for train, val in folds:
            assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == n
        per_class = np.array([np.bincount(y[v], minlength=3) for _, v in folds])
        assert (per_class.max(0) - per_class.min(0) <= 1).all()  # each class's share to within one row
    assert not np.array_equal(iterated[0][1], iterated[5][1])  # the repeats shuffle differently
    with pytest.raises(ValueError, match="same split"):
        evaluation.fold_indices(n, 5, repeats=2, shuffle=False)
    with pytest.raises(ValueError, match="split must be"):
        evaluation.fold_indices(n, 5, split="loo")


# ---------------------------------------------------------------------- cross_validate
@pytest.mark.parametrize("parallel", [False, True])
def test_no_validation_statistic_reaches_training(parallel):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 10)).astype(np.float32), rng.normal(size=60).astype(np.float32)
    x[:20] += 1000.0  # fold 0's validation rows (no shuffle): a statistic of them would show
    leaked = layers.Normalization()
    leaked.adapt(x)  # the course's mistake: adapted on all the data before splitting

    def build():
        model = dlkit.Sequential([dlkit.Input((10,)), leaked, layers.Dense(1)])
        return dlkit.Trainer(model, "sgd", "mse")

    seen = []

    def preprocess(x_train):
        seen.append(x_train)
        return lambda rows: rows

    result = evaluation.cross_validate(build, x, y, folds=3, shuffle=False, parallel=parallel, preprocess=preprocess,
                                       epochs=1, batch_size=16)
    assert result.parallel is parallel
    for trainer, (train, _), fitted_on in zip(result.trainers, result.folds, seen):
        mean, variance = trainer.get_weights()[:2]
        np.testing.assert_allclose(mean, x[train].mean(0), rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(variance, x[train].var(0), rtol=1e-4)
        np.testing.assert_array_equal(fitted_on, x[train])
    assert abs(result.trainers[0].get_weights()[0].mean()) < 1.0  # fold 0 never saw the offset rows


def test_folds_side_by_side_equal_folds_one_after_another():
    x, y = diabetes()
    weight = np.random.default_rng(0).uniform(0.5, 1.5, len(x)).astype(np.float32)
    kwargs = dict(folds=3, epochs=2, batch_size=98, sample_weight=weight)
    one_by_one = evaluation.cross_validate(lambda: regressor(0.1), x, y, parallel=False, **kwargs)
    vmapped = evaluation.cross_validate(lambda: regressor(0.1), x, y, parallel=True, **kwargs)
    assert vmapped.parallel and not one_by_one.parallel
    for a, b in zip(one_by_one.scores, vmapped.scores):
        chex.assert_trees_all_close(a, b, rtol=1e-4, atol=1e-6)
    for a, b in zip(one_by_one.histories, vmapped.histories):
        assert set(a) == set(b) == {"loss", "mae", "val_loss", "val_mae"}
        chex.assert_trees_all_close(a, b, rtol=1e-4, atol=1e-6)
    scores = np.array([s["mae"] for s in vmapped.scores])
    np.testing.assert_allclose(vmapped.mean["mae"], scores.mean(), rtol=1e-6)
    np.testing.assert_allclose(vmapped.std["mae"], scores.std(ddof=1), rtol=1e-6)
    np.testing.assert_allclose(vmapped.mean_history("val_mae"), np.mean([h["val_mae"] for h in vmapped.histories], 0))
    # 294 training rows are 3 batches of 98, 295 are 4: side by side, fold 0's 4th batch is all padding
    assert [len(t) for t, _ in vmapped.folds] == [294, 295, 295]
    assert "3 folds, parallel: loss" in repr(vmapped)


def test_iterated_stratified_k_fold_and_time_split_on_digits(digits8x8):
    x, y = digits8x8[0][:600], digits8x8[1][:600]
    result = evaluation.cross_validate(classifier, x, y, folds=2, repeats=2, split="stratified", epochs=5)
    assert result.parallel  # parallel="auto" on a CPU: side by side (docs/benchmarks.md)
    assert len(result.scores) == len(result.histories) == len(result.trainers) == 4
    assert all(set(s) == {"loss", "accuracy"} for s in result.scores)
    assert result.mean["accuracy"] > 0.3  # five epochs learn something (chance: 0.1)
    for train, val in result.folds:
        assert (np.abs(np.bincount(y[val], minlength=10) - np.bincount(y[train], minlength=10)) <= 1).all()
    timed = evaluation.cross_validate(classifier, x, y, folds=2, split="time", epochs=1)
    for train, val in timed.folds:
        assert train.max() < val.min()
    assert [len(t) for t, _ in timed.folds] == [200, 400]


def test_what_cannot_be_cross_validated_is_named():
    x, y = diabetes()
    with pytest.raises(TypeError, match="must return a dlkit.Trainer"):
        evaluation.cross_validate(lambda: regressor().model, x, y, folds=2)
    shared = layers.Dense(1)

    def reusing():
        return dlkit.Trainer(dlkit.Sequential([dlkit.Input((10,)), shared]), "sgd", "mse")

    with pytest.raises(ValueError, match="sharing the layer object"):
        evaluation.cross_validate(reusing, x, y, folds=2)
    with pytest.raises(ValueError, match="parallel=True cannot.*fit arguments \\['callbacks'\\]"):
        evaluation.cross_validate(regressor, x, y, folds=2, parallel=True, callbacks=[])


# ---------------------------------------------------------------------- ensembles
def test_ensemble_averages_probabilities_and_votes(digits8x8):
    x = digits8x8[0][:50]
    members = [classifier(seed) for seed in range(5)]
    probabilities = np.stack([m.predict(x) for m in members])
    ensemble = Ensemble(members)
    chex.assert_trees_all_close(ensemble.predict(x), probabilities.mean(0), rtol=1e-6, atol=1e-7)
    votes = probabilities.argmax(-1)  # (members, rows)
    majority = np.array([np.bincount(column, minlength=10).argmax() for column in votes.T])
    np.testing.assert_array_equal(ensemble.predict(x, mode="vote"), majority)
    logits = [classifier(seed, activation=None) for seed in range(3)]
    softmax = np.stack([np.exp(p) / np.exp(p).sum(-1, keepdims=True) for p in (m.predict(x) for m in logits)])
    chex.assert_trees_all_close(ensemble_predict(logits, x, from_logits=True), softmax.mean(0), rtol=1e-5)
    binary = [lambda rows, c=c: np.full((len(rows), 1), c) for c in (0.2, 0.7, 0.9)]
    np.testing.assert_array_equal(ensemble_predict(binary, x, mode="vote"), np.ones(50))  # two of three say 1


def test_a_seed_ensemble_beats_its_best_member_on_8x8_digits(digits8x8):
    """Default tier: 5 MLPs 64-128-10 trained side by side to convergence (150 epochs on 1,000 of
    scikit-learn's 8x8 digits, training loss ~0.002): members' test log-loss 0.058-0.062 on the 797
    others, the ensemble's 0.056."""
    (x, y), n = digits8x8, 1000
    ensemble = train_seed_ensemble(lambda seed: classifier(seed, width=128), x[:n], y[:n], seeds=range(5),
                                   epochs=150, batch_size=32)
    assert all(h["loss"][-1] < 0.01 for h in ensemble.histories)
    members = [log_loss(p, y[n:]) for p in ensemble.member_predictions(x[n:])]
    assert log_loss(ensemble.predict(x[n:]), y[n:]) < min(members)


@pytest.mark.slow
def test_a_seed_ensemble_beats_its_best_member_on_the_bundled_digits():
    """5 MLPs 784-128-10 trained 20 epochs on 8,000 bundled MNIST digits (training loss ~0.01):
    members' test log-loss 0.143-0.162 on the other 2,000, the ensemble's 0.136 (0.95x the best)."""
    (x, y), (x_test, y_test) = dlkit.datasets.split_digits()

    def build(seed):
        model = dlkit.Sequential([dlkit.Input((784,)), layers.Dense(128, "relu"), layers.Dense(10, "softmax")])
        return dlkit.Trainer(model, "adam", "sparse_categorical_crossentropy", seed=seed)

    ensemble = train_seed_ensemble(build, x.reshape(-1, 784), y, seeds=range(5), epochs=20, batch_size=64)
    members = [log_loss(p, y_test) for p in ensemble.member_predictions(x_test.reshape(-1, 784))]
    assert log_loss(ensemble.predict(x_test.reshape(-1, 784)), y_test) < 0.97 * min(members)
