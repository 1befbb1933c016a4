"""Streaming metrics against scikit-learn and Keras 3 on real predictions, streaming exactness, get()."""
import dataclasses
import functools
import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # only read if Keras is imported, before its first import

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import datasets, linear_model, preprocessing
from sklearn import metrics as skm

from dlkit import losses, metrics

SIZES = (7, 32, 100)  # batch sizes of the streaming checks (the last batch padded and masked)


# ----------------------------------------------------------------------------------------------
# Real predictions: logistic regressions on scikit-learn's data sets
# ----------------------------------------------------------------------------------------------

@functools.cache
def binary_predictions():
    """Breast cancer (569 samples), a 2-feature logistic regression fitted on one half, scored on
    the other: 285 held-out probabilities with ROC-AUC ~0.95 (neither trivial nor perfect)."""
    x, y = datasets.load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = preprocessing.StandardScaler().fit_transform(x[order][:, :2]), y[order]
    model = linear_model.LogisticRegression().fit(x[:284], y[:284])
    return y[284:].astype(np.float32), model.predict_proba(x[284:])[:, 1].astype(np.float32)


@functools.cache
def digit_predictions():
    """Digits (1797 8x8 images), a 10-class logistic regression fitted on 600, scored on 1197 held
    out (accuracy ~0.91, top-2 ~0.96)."""
    x, y = datasets.load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order] / 16.0, y[order]
    model = linear_model.LogisticRegression(C=0.01, max_iter=200).fit(x[:600], y[:600])
    return y[600:].astype(np.int32), model.predict_proba(x[600:]).astype(np.float32)


@functools.cache
def multilabel_predictions():
    """Digits with three labels per image, "is even", "is > 4", "is prime", each scored by summing
    the 10-class model's probabilities of the digits it holds."""
    labels, probs = digit_predictions()
    groups = ([0, 2, 4, 6, 8], [5, 6, 7, 8, 9], [2, 3, 5, 7])
    y = np.stack([np.isin(labels, g) for g in groups], axis=1).astype(np.float32)
    p = np.stack([probs[:, g].sum(axis=1) for g in groups], axis=1)
    return y, np.clip(p, 0.0, 1.0).astype(np.float32)


@functools.cache
def regression_predictions():
    """Diabetes (442 patients), a ridge regression fitted on half, predicted on the other half."""
    x, y = datasets.load_diabetes(return_X_y=True)
    model = linear_model.Ridge(alpha=0.1).fit(x[:221], y[:221])
    return y[221:].astype(np.float32), model.predict(x[221:]).astype(np.float32)


@functools.cache
def multi_output_predictions():
    """Linnerud (20 athletes): three physiological targets regressed on three exercises."""
    x, y = datasets.load_linnerud(return_X_y=True)
    model = linear_model.LinearRegression().fit(x, y)
    return y.astype(np.float32), model.predict(x).astype(np.float32)


def weights_for(n, seed=0):
    return np.random.default_rng(seed).uniform(0.2, 2.0, n).astype(np.float32)


def one_hot(labels, classes=10):
    return np.eye(classes, dtype=np.float32)[labels]


@functools.cache
def keras_metrics():
    import keras
    return keras.metrics


@functools.partial(jax.jit, static_argnums=0)
def _result(metric, y, p, w):
    return metric.result(metric.update(metric.init(), y, p, w))


def ours(metric, y, p, w=None):
    """``metric``'s value on one batch (jitted; no weights is the same as weights of 1)."""
    return np.asarray(_result(metric, y, p, np.ones(len(y), np.float32) if w is None else w))


@functools.partial(jax.jit, static_argnums=0)
def _results(group, y, p, w):
    return [metric.result(metric.update(metric.init(), y, p, w)) for metric in group]


def check_all(checks, y, p, w=None, **tolerance):
    """``checks``: ``(metric, reference)`` pairs measured on the same ``(y, p, w)``, in one jit."""
    group = tuple(metric for metric, _ in checks)
    found = _results(group, y, p, np.ones(len(y), np.float32) if w is None else w)
    for (metric, reference), value in zip(checks, found):
        np.testing.assert_allclose(value, reference, err_msg=repr(metric), **tolerance)


def keras_value(keras_metric, y, p, w=None):
    keras_metric.update_state(y, p, sample_weight=w)
    return np.asarray(keras_metric.result())


# ----------------------------------------------------------------------------------------------
# Per-sample functions (public API kept from the old module)
# ----------------------------------------------------------------------------------------------

RNG = np.random.default_rng(7)
N, K = 12, 4
LOGITS = RNG.standard_normal((N, K)).astype(np.float32) * 2
PROBS = (np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)).astype(np.float32)
LABELS = RNG.integers(0, K, N).astype(np.int32)
LABELS[:K] = np.arange(K)
ONE_HOT = np.eye(K, dtype=np.float32)[LABELS]
BIN_LOGITS = RNG.standard_normal((N, 1)).astype(np.float32) * 2
BIN_PROBS = (1.0 / (1.0 + np.exp(-BIN_LOGITS))).astype(np.float32)
BIN_Y = RNG.integers(0, 2, N).astype(np.float32)
BIN_Y[:2] = [0, 1]


def test_binary_accuracy_threshold():
    y = np.array([1, 0, 1, 0, 1, 0], np.float32)
    p = np.array([0.9, 0.2, 0.5, 0.5, 0.51, 0.49], np.float32)[:, None]
    acc = metrics.binary_accuracy(y, p)
    chex.assert_shape(acc, (6,))
    # 0.5 is not above the threshold (Keras: y_pred > threshold)
    chex.assert_trees_all_equal(acc, jnp.array([1, 1, 0, 1, 1, 1], jnp.float32))
    np.testing.assert_allclose(acc.mean(), skm.accuracy_score(y, p[:, 0] > 0.5))
    np.testing.assert_allclose(metrics.binary_accuracy(y, p, threshold=0.3).mean(),
                               skm.accuracy_score(y, p[:, 0] > 0.3))
    # a metric object called on a batch is Keras' update_state + result(): the scalar result
    value = metrics.BinaryAccuracy(threshold=0.7)(y, p)
    chex.assert_shape(value, ())
    np.testing.assert_allclose(value, skm.accuracy_score(y, p[:, 0] > 0.7))
    # multi-label: one value per sample, the fraction of its labels right
    chex.assert_trees_all_close(metrics.binary_accuracy(np.array([[1, 0], [1, 1]]), np.array([[0.9, 0.9], [0.6, 0.7]])),
                                jnp.array([0.5, 1.0]))


def test_categorical_and_sparse_accuracy_vs_sklearn():
    expected = skm.accuracy_score(LABELS, PROBS.argmax(-1))
    assert 0 < expected < 1  # a meaningful comparison
    acc = metrics.categorical_accuracy(ONE_HOT, PROBS)
    chex.assert_shape(acc, (N,))
    np.testing.assert_allclose(acc.mean(), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.sparse_categorical_accuracy(LABELS, PROBS).mean(), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.sparse_categorical_accuracy(LABELS[:, None], PROBS).mean(), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.SparseCategoricalAccuracy()(LABELS, LOGITS), expected, rtol=1e-6)
    np.testing.assert_allclose(metrics.CategoricalAccuracy()(ONE_HOT, LOGITS), expected, rtol=1e-6)
    for k in (1, 2, 3):
        top = metrics.sparse_top_k_categorical_accuracy(LABELS, PROBS, k=k)
        chex.assert_shape(top, (N,))
        np.testing.assert_allclose(top.mean(), skm.top_k_accuracy_score(LABELS, PROBS, k=k), rtol=1e-6)
        chex.assert_trees_all_equal(metrics.top_k_categorical_accuracy(ONE_HOT, PROBS, k=k), top)


def test_eager_keras_surface_accumulates_and_resets():
    labels, probs = digit_predictions()
    metric = metrics.SparseCategoricalAccuracy()
    metric.update_state(labels[:500], probs[:500])
    metric.update_state(labels[500:], probs[500:])
    np.testing.assert_allclose(metric.result(), skm.accuracy_score(labels, probs.argmax(-1)), rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    np.testing.assert_allclose(metric(labels[:100], probs[:100]),
                               skm.accuracy_score(labels[:100], probs[:100].argmax(-1)))


# ----------------------------------------------------------------------------------------------
# get(): Keras 3's resolution and naming
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss, y_shape, p_shape, expected", [
    ("sparse_categorical_crossentropy", (N,), (N, K), metrics.SparseCategoricalAccuracy),
    ("sparse_categorical_crossentropy", (N, 1), (N, K), metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", (N, K), (N, K), metrics.CategoricalAccuracy),
    ("binary_crossentropy", (N,), (N, 1), metrics.BinaryAccuracy),
    ("mse", (N, 1), (N, 1), metrics.BinaryAccuracy),
    ("mse", (N,), (N,), metrics.BinaryAccuracy),
    ("mse", (N, K), (N, K), metrics.CategoricalAccuracy),
    ("mse", (N,), (N, K), metrics.SparseCategoricalAccuracy),
])
def test_accuracy_resolution_like_keras(loss, y_shape, p_shape, expected):
    for name in ("accuracy", "acc"):
        metric = metrics.get(name, losses.get(loss), y_shape, p_shape)
        assert type(metric) is expected and metric.name == name  # logs keep the name the user wrote
        if expected is metrics.SparseCategoricalAccuracy:
            value, reference = metric(LABELS.reshape(y_shape), PROBS), skm.accuracy_score(LABELS, PROBS.argmax(-1))
        elif expected is metrics.CategoricalAccuracy:
            value, reference = metric(ONE_HOT, PROBS), skm.accuracy_score(LABELS, PROBS.argmax(-1))
        else:
            value = metric(BIN_Y.reshape(y_shape), BIN_PROBS.reshape(p_shape))
            reference = skm.accuracy_score(BIN_Y, BIN_PROBS[:, 0] > 0.5)
        np.testing.assert_allclose(value, reference, rtol=1e-6)


def test_binary_accuracy_from_logits_thresholds_at_zero():
    metric = metrics.get("accuracy", losses.BinaryCrossentropy(from_logits=True), (N,), (N, 1))
    np.testing.assert_allclose(metric(BIN_Y, BIN_LOGITS), skm.accuracy_score(BIN_Y, BIN_LOGITS[:, 0] > 0))
    # logits between 0 and 0.5: a 0.5 threshold would call them all negative
    y = np.array([1.0, 1.0, 0.0], np.float32)
    z = np.array([[0.1], [0.4], [-0.2]], np.float32)
    chex.assert_trees_all_equal(metrics.get("acc", losses.BinaryCrossentropy(from_logits=True), (3,), (3, 1))(y, z),
                                jnp.float32(1.0))
    chex.assert_trees_all_close(metrics.get("accuracy", losses.BinaryCrossentropy(), (3,), (3, 1))(y, z),
                                jnp.float32(1 / 3))


def test_crossentropy_resolution_follows_loss_and_shapes():
    m = metrics.get("ce", losses.SparseCategoricalCrossentropy(from_logits=True), (N,), (N, K))
    assert type(m) is metrics.SparseCategoricalCrossentropy and m.from_logits and m.name == "ce"
    np.testing.assert_allclose(ours(m, LABELS, LOGITS), skm.log_loss(LABELS, PROBS.astype(np.float64)), rtol=1e-5)
    m = metrics.get("crossentropy", losses.get("mse"), (N, 1), (N, 1))
    assert type(m) is metrics.BinaryCrossentropy and not m.from_logits and m.name == "crossentropy"
    assert type(metrics.get("crossentropy", None, (N, K), (N, K))) is metrics.CategoricalCrossentropy


def test_metric_lookup_names_and_errors():
    y = RNG.standard_normal((N, 3)).astype(np.float32)
    p = RNG.standard_normal((N, 3)).astype(np.float32)
    m = metrics.get("mae", losses.get("mse"), y.shape, p.shape)
    assert type(m) is metrics.MeanAbsoluteError and m.name == "mae"
    np.testing.assert_allclose(m(y, p), skm.mean_absolute_error(y, p), rtol=1e-5)
    m = metrics.get("mean_squared_error")
    assert type(m) is metrics.MeanSquaredError and m.name == "mean_squared_error"
    np.testing.assert_allclose(m(y, p), skm.mean_squared_error(y, p), rtol=1e-5)
    # Keras 3: class names and their snake_case, logged under the string as written
    for name, cls in [("AUC", metrics.AUC), ("auc", metrics.AUC), ("Precision", metrics.Precision),
                      ("recall", metrics.Recall), ("F1Score", metrics.F1Score), ("f1_score", metrics.F1Score),
                      ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
                      ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
                      ("RootMeanSquaredError", metrics.RootMeanSquaredError), ("MSE", metrics.MeanSquaredError),
                      ("mape", metrics.MeanAbsolutePercentageError), ("r2_score", metrics.R2Score),
                      ("binary_io_u", metrics.BinaryIoU), ("mean_average_precision", metrics.MeanAveragePrecision)]:
        found = metrics.get(name)
        assert type(found) is cls and found.name == name, name
    assert metrics.get("AUC") == metrics.AUC(name="AUC")

    def my_metric(t, q):
        return jnp.abs(t - q).max(-1)

    m = metrics.get(my_metric, losses.get("mse"), y.shape, p.shape)
    assert type(m) is metrics.MeanMetricWrapper and m.name == "my_metric"
    np.testing.assert_allclose(m(y, p), np.abs(y - p).max(-1).mean(), rtol=1e-6)
    # a scalar-valued function is applied per sample; a Loss object gives its per-sample values
    m = metrics.get(lambda t, q: jnp.mean(jnp.abs(t - q)))
    np.testing.assert_allclose(ours(m, y, p, np.arange(N, dtype=np.float32)),
                               np.average(np.abs(y - p).mean(-1), weights=np.arange(N)), rtol=1e-6)
    m = metrics.get(losses.MeanSquaredError())
    assert m.name == "mean_squared_error"
    np.testing.assert_allclose(m(y, p), skm.mean_squared_error(y, p), rtol=1e-5)
    assert type(metrics.get(metrics.Recall)) is metrics.Recall
    pre = metrics.BinaryAccuracy(name="bacc")
    assert metrics.get(pre, losses.get("mse"), y.shape, p.shape) is pre
    with pytest.raises(ValueError, match=r"Unknown metric 'accuracyy'.*Valid names:.*AUC.*accuracy.*f1_score"):
        metrics.get("accuracyy", losses.get("mse"), y.shape, p.shape)
    with pytest.raises(ValueError, match=r"'MeanIoU' needs arguments \(num_classes\)"):
        metrics.get("MeanIoU")
    with pytest.raises(ValueError, match="resolved from the loss and the shapes"):
        metrics.get("accuracy")


def _every_metric(name=None):
    """One instance of every metric class, with the arguments it needs."""
    needs = {metrics.IoU: dict(num_classes=3, target_class_ids=(0, 2)), metrics.MeanIoU: dict(num_classes=3),
             metrics.OneHotIoU: dict(num_classes=3, target_class_ids=[1]), metrics.OneHotMeanIoU: dict(num_classes=3),
             metrics.PrecisionAtRecall: dict(recall=0.5), metrics.RecallAtPrecision: dict(precision=0.5),
             metrics.SensitivityAtSpecificity: dict(specificity=0.5),
             metrics.SpecificityAtSensitivity: dict(sensitivity=0.5)}
    extra = {} if name is None else {"name": name}
    return [cls(**needs.get(cls, {}), **extra) for cls in metrics._CLASSES]


def test_every_class_takes_a_name_is_hashable_and_documented():
    for default, named in zip(_every_metric(), _every_metric("custom")):
        assert named.name == "custom" and isinstance(default.name, str) and default.name != "custom"
        assert hash(named) == hash(dataclasses.replace(named)) and named == dataclasses.replace(named)
        doc = type(named).__doc__
        assert "Keras" in doc and "Args:" in doc, type(named).__name__
    # Keras' default names: the class name in snake_case where Keras' default is None
    assert [metrics.AUC().name, metrics.Precision().name, metrics.MeanIoU(2).name, metrics.F1Score().name,
            metrics.LogCoshError().name] == ["auc", "precision", "mean_io_u", "f1_score", "logcosh"]
    # thresholds given as lists are stored as tuples (hashable, static under jit)
    assert metrics.Precision(thresholds=[0.2, 0.7]).thresholds == (0.2, 0.7)
    assert metrics.AUC(label_weights=np.ones(3)).label_weights == (1.0, 1.0, 1.0)
    for public in metrics.__all__:
        assert getattr(metrics, public).__doc__, public


# ----------------------------------------------------------------------------------------------
# Against scikit-learn on real predictions
# ----------------------------------------------------------------------------------------------

def test_binary_classifier_vs_sklearn():
    y, p = binary_predictions()
    hard, cuts = p > 0.5, [0.7, 0.3, 0.5]
    for weight in (None, weights_for(len(y))):
        kw = {"sample_weight": weight}
        tn, fp, fn, tp = skm.confusion_matrix(y, hard, **kw).ravel()
        check_all([(metrics.Precision(), skm.precision_score(y, hard, **kw)),
                   (metrics.Recall(), skm.recall_score(y, hard, **kw)),
                   (metrics.BinaryAccuracy(), skm.accuracy_score(y, hard, **kw)),
                   (metrics.TruePositives(), tp), (metrics.FalsePositives(), fp),
                   (metrics.TrueNegatives(), tn), (metrics.FalseNegatives(), fn),
                   # several thresholds: one precision per threshold, in the order given
                   (metrics.Precision(cuts), [skm.precision_score(y, p > t, **kw) for t in cuts])],
                  y, p, weight, rtol=1e-6, atol=1e-6)
        check_all([(metrics.F1Score(threshold=0.5), [skm.f1_score(y, hard, **kw)])], y[:, None], p[:, None], weight,
                  atol=1e-6)
        check_all([(metrics.AUC(), skm.roc_auc_score(y, p, **kw))], y, p, weight, atol=1e-3)
        check_all([(metrics.AUC(curve="PR"), skm.average_precision_score(y, p, **kw))], y, p, weight, atol=1e-2)


def test_multiclass_classifier_vs_sklearn():
    labels, probs = digit_predictions()
    hard = probs.argmax(-1)
    for weight in (None, weights_for(len(labels))):
        kw = {"sample_weight": weight}
        cm = skm.confusion_matrix(labels, hard, **kw)
        iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))  # Jaccard index per class
        one_hot_checks = [(metrics.Precision(class_id=3), skm.precision_score(labels == 3, probs[:, 3] > 0.5, **kw)),
                          (metrics.Recall(top_k=1), skm.accuracy_score(labels, hard, **kw)),
                          (metrics.OneHotMeanIoU(10), skm.jaccard_score(labels, hard, average="macro", **kw))]
        sparse_checks = []
        for average in (None, "micro", "macro", "weighted"):
            one_hot_checks += [(metrics.F1Score(average), skm.f1_score(labels, hard, average=average, **kw)),
                               (metrics.FBetaScore(average, beta=2.0),
                                skm.fbeta_score(labels, hard, beta=2.0, average=average, **kw))]
        for k in (1, 2, 3, 5):
            reference = skm.top_k_accuracy_score(labels, probs, k=k, **kw)
            one_hot_checks.append((metrics.TopKCategoricalAccuracy(k), reference))
            sparse_checks.append((metrics.SparseTopKCategoricalAccuracy(k), reference))
        check_all(one_hot_checks, one_hot(labels), probs, weight, atol=1e-6)
        check_all(sparse_checks, labels, probs, weight, atol=1e-6)
        check_all([(metrics.MeanIoU(10), iou.mean()), (metrics.IoU(10, (1, 8)), iou[[1, 8]].mean())], labels, hard,
                  weight, atol=1e-6)


def test_multilabel_classifier_vs_sklearn():
    y, p = multilabel_predictions()
    for weight in (None, weights_for(len(y))):
        kw = {"sample_weight": weight}
        check_all([(metrics.AUC(multi_label=True), skm.roc_auc_score(y, p, average="macro", **kw)),
                   # without multi_label every label is one more binary prediction (sklearn's micro average)
                   (metrics.AUC(), skm.roc_auc_score(y, p, average="micro", **kw))], y, p, weight, atol=1e-3)
        reference = skm.average_precision_score(y, p, average="macro", **kw)
        check_all([(metrics.MeanAveragePrecision(), reference), (metrics.AUC(curve="PR", multi_label=True), reference)],
                  y, p, weight, atol=1e-2)
        check_all([(metrics.F1Score(average, threshold=0.5), skm.f1_score(y, p > 0.5, average=average, **kw))
                   for average in ("micro", "macro", "weighted")]
                  + [(metrics.Precision(), skm.precision_score(y, p > 0.5, average="micro", **kw))],
                  y, p, weight, atol=1e-6)
    # label weights: the weighted mean of the per-label areas
    per_label = [skm.roc_auc_score(y[:, j], p[:, j]) for j in range(3)]
    check_all([(metrics.AUC(multi_label=True, label_weights=[1, 2, 5]), np.average(per_label, weights=[1, 2, 5]))],
              y, p, atol=1e-3)


def test_regression_vs_sklearn_and_numpy():
    y, p = regression_predictions()
    for weight in (None, weights_for(len(y))):
        kw = {"sample_weight": weight}
        check_all([(metrics.MeanSquaredError(), skm.mean_squared_error(y, p, **kw)),
                   (metrics.MeanAbsoluteError(), skm.mean_absolute_error(y, p, **kw)),
                   (metrics.RootMeanSquaredError(), np.sqrt(skm.mean_squared_error(y, p, **kw))),
                   (metrics.MeanAbsolutePercentageError(), 100 * skm.mean_absolute_percentage_error(y, p, **kw)),
                   (metrics.MeanSquaredLogarithmicError(), skm.mean_squared_log_error(y, np.maximum(p, 1e-7), **kw)),
                   (metrics.R2Score(), skm.r2_score(y, p, **kw)),
                   (metrics.LogCoshError(), np.average(np.log(np.cosh((p - y).astype(np.float64))), weights=weight))],
                  y, p, weight, rtol=2e-6)
    # adjusted R2 with k regressors
    r2, n = skm.r2_score(y, p), len(y)
    check_all([(metrics.R2Score(num_regressors=10), 1 - (1 - r2) * (n - 1) / (n - 11))], y, p, rtol=2e-6)
    # several outputs: the aggregations of sklearn's multioutput argument (float32 Q - S^2/n: 5e-5)
    y3, p3 = multi_output_predictions()
    check_all([(metrics.R2Score(aggregation), skm.r2_score(y3, p3, multioutput=multioutput))
               for aggregation, multioutput in [("uniform_average", "uniform_average"),
                                                ("variance_weighted_average", "variance_weighted"),
                                                (None, "raw_values")]], y3, p3, rtol=5e-5)
    cosine = (y3 * p3).sum(-1) / np.linalg.norm(y3, axis=-1) / np.linalg.norm(p3, axis=-1)
    check_all([(metrics.CosineSimilarity(), cosine.mean())], y3, p3, rtol=1e-6)
    check_all([(metrics.CosineSimilarity(axis=1), cosine.mean())], y3[:, :, None], p3[:, :, None], rtol=1e-6)


def test_probabilistic_and_hinge_vs_sklearn():
    y, p = binary_predictions()
    labels, probs = digit_predictions()
    probs64 = probs.astype(np.float64) / probs.astype(np.float64).sum(-1, keepdims=True)
    w = weights_for(len(y))
    np.testing.assert_allclose(ours(metrics.BinaryCrossentropy(), y, p, w), skm.log_loss(y, p, sample_weight=w),
                               rtol=1e-5)
    np.testing.assert_allclose(ours(metrics.CategoricalCrossentropy(), one_hot(labels), probs),
                               skm.log_loss(labels, probs64), rtol=1e-5)
    np.testing.assert_allclose(ours(metrics.SparseCategoricalCrossentropy(), labels, probs),
                               skm.log_loss(labels, probs64), rtol=1e-5)
    np.testing.assert_allclose(ours(metrics.SparseCategoricalCrossentropy(from_logits=True), labels, np.log(probs)),
                               skm.log_loss(labels, probs64), rtol=1e-5)
    target = np.clip(one_hot(labels) * 0.9 + 0.01, 1e-7, 1)
    np.testing.assert_allclose(ours(metrics.KLDivergence(), target, probs),
                               (target * np.log(target / np.clip(probs, 1e-7, 1))).sum(-1).mean(), rtol=1e-5)
    np.testing.assert_allclose(ours(metrics.Poisson(), labels[:, None], probs[:, :1] * 9),
                               np.mean(probs[:, 0] * 9 - labels * np.log(probs[:, 0] * 9 + 1e-7)), rtol=1e-5)
    decision = np.log(p / (1 - p))
    np.testing.assert_allclose(ours(metrics.Hinge(), y, decision, w), skm.hinge_loss(y, decision, sample_weight=w),
                               rtol=1e-5)  # 0/1 targets are mapped to -1/1
    np.testing.assert_allclose(ours(metrics.SquaredHinge(), 2 * y - 1, decision),
                               np.mean(np.maximum(1 - (2 * y - 1) * decision, 0) ** 2), rtol=1e-5)
    scores = np.log(probs)
    expected = np.maximum(np.max(np.where(one_hot(labels) > 0, 0, scores), -1) - scores[np.arange(len(labels)), labels]
                          + 1, 0)
    np.testing.assert_allclose(ours(metrics.CategoricalHinge(), one_hot(labels), scores), expected.mean(), rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Against Keras 3 on the same predictions
# ----------------------------------------------------------------------------------------------

def _keras_cases():
    """``{data: ((y, p), [(class name, keyword arguments), ...])}``: Keras metrics on real predictions."""
    y, p = binary_predictions()
    labels, probs = digit_predictions()
    ym, pm = multilabel_predictions()
    return {
        "binary": ((y, p), [
            ("AUC", dict()), ("AUC", dict(curve="PR")), ("AUC", dict(curve="PR", summation_method="majoring")),
            ("AUC", dict(thresholds=[0.1, 0.45, 0.8])), ("Precision", dict(thresholds=[0.2, 0.5, 0.9, 0.35])),
            ("Recall", dict(thresholds=[0.0, 0.25, 0.5, 0.75, 1.0])), ("PrecisionAtRecall", dict(recall=0.8)),
            ("RecallAtPrecision", dict(precision=0.9)), ("SensitivityAtSpecificity", dict(specificity=0.85)),
            ("SpecificityAtSensitivity", dict(sensitivity=0.9))]),
        "logits": ((y, np.log(p / (1 - p))), [("AUC", dict(from_logits=True))]),
        "multi_label": ((ym, pm), [
            ("AUC", dict(multi_label=True)), ("AUC", dict(curve="PR", multi_label=True)),
            ("AUC", dict(multi_label=True, label_weights=[0.5, 1.0, 2.0]))]),
        "one_hot": ((one_hot(labels), probs), [
            ("Precision", dict(top_k=2)), ("Recall", dict(class_id=4, thresholds=[0.3, 0.6])),
            ("Precision", dict(top_k=2, class_id=5)), ("F1Score", dict()), ("F1Score", dict(average="micro")),
            ("F1Score", dict(average="macro")), ("F1Score", dict(average="weighted"))]),
        "sparse": ((labels, probs), [
            ("MeanIoU", dict(num_classes=10, sparse_y_pred=False, dtype="float32")),
            ("MeanIoU", dict(num_classes=10, ignore_class=3, sparse_y_pred=False, dtype="float32"))]),
    }


def test_equal_to_keras_on_real_predictions():
    km = keras_metrics()
    worst = 0.0
    for (y, p), cases in _keras_cases().values():
        group = tuple(getattr(metrics, name)(**kwargs) for name, kwargs in cases)
        for weight in (np.ones(len(y), np.float32), weights_for(len(y), seed=1)):
            mine = _results(group, y, p, weight)
            for (name, kwargs), value in zip(cases, mine):
                theirs = keras_value(getattr(km, name)(**kwargs), y, p, weight)
                chex.assert_trees_all_close(value, theirs, atol=1e-6, rtol=1e-6, custom_message=f"{name}{kwargs}")
                worst = max(worst, float(np.max(np.abs(value - theirs))))
    assert worst < 1e-6


# ----------------------------------------------------------------------------------------------
# Streaming: batches of 7, 32, 100 (the last padded with garbage and masked), merged halves
# ----------------------------------------------------------------------------------------------

def _garbage_like(a, count, rng):
    """Rows that only pad a short last batch: out-of-range labels, NaN / huge scores."""
    shape = (count,) + a.shape[1:]
    if np.issubdtype(a.dtype, np.integer):
        return rng.choice(np.array([-3, 99, 1], a.dtype), shape)
    return rng.choice(np.array([np.nan, 1e9, -1e9, 0.5], a.dtype), shape)


def _batched(a, size, rng, pad=None):
    batches = -(-len(a) // size)
    extra = _garbage_like(a, batches * size - len(a), rng) if pad is None else np.full(batches * size - len(a), pad)
    padded = np.concatenate([a, extra.astype(a.dtype)])
    return padded.reshape((batches, size) + a.shape[1:])


def streaming_results(group, y, p, w):
    """Each metric's result on one batch, on batches of each of ``SIZES`` (accumulated with
    ``update``, the last batch padded with garbage rows that have garbage weights and mask 0), and
    from ``merge`` of two halves: ``{name: [whole, size 7, size 32, size 100, halves]}``, all in one
    jitted function for the group of metrics."""
    rng = np.random.default_rng(0)
    n, half = len(y), len(y) // 2
    runs = [tuple(_batched(a, size, rng) for a in (y, p, w)) + (_batched(np.ones(n, np.float32), size, rng, 0),)
            for size in SIZES]

    def stream(metric, y, p, w, runs):
        whole = metric.update(metric.init(), y, p, w)
        results = [metric.compute(whole)]
        zeros = jax.tree.map(jnp.zeros_like, whole)  # init() at the state's full shape (a fixed scan carry)
        for batches in runs:
            state, _ = jax.lax.scan(lambda s, b: (metric.update(s, *b), None), zeros, batches)
            results.append(metric.compute(state))
        a = metric.update(metric.init(), y[:half], p[:half], w[:half])
        b = metric.update(metric.init(), y[half:], p[half:], w[half:])
        results.append(metric.compute(metric.merge(a, b)))
        return results

    run = jax.jit(lambda *args: {metric.name: stream(metric, *args) for metric in group})
    return run(y, p, w, runs)


def _counting_groups():
    """Metrics whose state is counts, grouped by the predictions they measure."""
    y, p = binary_predictions()
    labels, probs = digit_predictions()
    ym, pm = multilabel_predictions()
    return {
        "binary": ((metrics.Precision(), metrics.Recall(thresholds=[0.2, 0.5, 0.8]), metrics.AUC(),
                    metrics.PrecisionAtRecall(0.8), metrics.BinaryIoU(), metrics.BinaryAccuracy()), y, p),
        "sparse": ((metrics.SparseCategoricalAccuracy(), metrics.SparseTopKCategoricalAccuracy(3),
                    metrics.MeanIoU(10, sparse_y_pred=False)), labels, probs),
        "one_hot": ((metrics.TopKCategoricalAccuracy(2), metrics.Precision(top_k=2, class_id=3), metrics.F1Score(),
                     metrics.OneHotIoU(10, (0, 4), ignore_class=9)), one_hot(labels), probs),
        "multi_label": ((metrics.BinaryAccuracy(), metrics.MeanAveragePrecision(),
                         metrics.F1Score("micro", threshold=0.5)), ym, pm),
    }


def _mean_groups():
    """Mean-type metrics (float sums), grouped by the predictions they measure."""
    y, p = binary_predictions()
    labels, probs = digit_predictions()
    yr, pr = regression_predictions()
    return {
        "regression": ((metrics.MeanSquaredError(), metrics.RootMeanSquaredError(), metrics.R2Score()), yr, pr),
        "logits": ((metrics.BinaryCrossentropy(from_logits=True), metrics.Hinge()), y, np.log(p / (1 - p))),
        "sparse": ((metrics.SparseCategoricalCrossentropy(),), labels, probs),
    }


@pytest.mark.parametrize("group", list(_counting_groups()))
def test_counting_metrics_stream_bitwise(group):
    members, y, p = _counting_groups()[group]
    results = streaming_results(members, y, p, np.ones(len(y), np.float32))
    for name, (whole, *others) in results.items():
        assert np.all(np.isfinite(whole)) and np.any(np.asarray(whole) != 0), name
        for other in others:
            chex.assert_trees_all_equal(other, whole, custom_message=name)  # integer counts: bit for bit


@pytest.mark.parametrize("group", list(_mean_groups()))
def test_mean_metrics_stream_to_float_precision(group):
    members, y, p = _mean_groups()[group]
    results = streaming_results(members, y, p, weights_for(len(y)))
    for name, (whole, *others) in results.items():
        assert np.all(np.isfinite(whole)), name
        for other in others:
            chex.assert_trees_all_close(other, whole, rtol=1e-6, atol=1e-6, custom_message=name)


def test_root_mean_squared_error_is_root_of_epoch_mean():
    y, p = regression_predictions()
    metric = metrics.RootMeanSquaredError()
    state = metric.merge(metric.update(metric.init(), y[:20], p[:20]), metric.update(metric.init(), y[20:], p[20:]))
    np.testing.assert_allclose(metric.result(state), np.sqrt(np.mean((y - p) ** 2)), rtol=1e-6)
    mean_of_roots = (np.sqrt(np.mean((y[:20] - p[:20]) ** 2)) + np.sqrt(np.mean((y[20:] - p[20:]) ** 2))) / 2
    assert abs(float(metric.result(state)) - mean_of_roots) > 1.0


@functools.partial(jax.jit, static_argnums=0)
def _measured(group, y, p, w, mask):
    return [metric.measure(y, p, w, mask).result() for metric in group]


def test_masked_rows_are_zero_weights_and_contribute_nothing():
    labels, probs = digit_predictions()
    mask = (np.random.default_rng(3).random(len(labels)) < 0.7).astype(np.float32)
    real, weight, ones = mask > 0, weights_for(len(labels)), np.ones(len(labels), np.float32)
    garbage_probs = np.where(real[:, None], probs, np.nan).astype(np.float32)
    cases = [((metrics.F1Score("macro"), metrics.AUC(multi_label=True)), one_hot(labels), np.nan),
             ((metrics.SparseCategoricalAccuracy(), metrics.MeanIoU(10, sparse_y_pred=False),
               metrics.SparseCategoricalCrossentropy()), labels, 99),
             ((metrics.R2Score(),), probs, np.inf)]
    for group, y, garbage in cases:
        garbage_y = np.where(real.reshape((-1,) + (1,) * (y.ndim - 1)), y, garbage).astype(y.dtype)
        subset = _measured(group, y[real], probs[real], weight[real], ones[real])
        masked = _measured(group, garbage_y, garbage_probs, weight, mask)
        zero_weight = _measured(group, garbage_y, garbage_probs, weight * mask, ones)
        assert np.all(np.isfinite(subset))
        chex.assert_trees_all_close(masked, subset, rtol=1e-6, atol=1e-6)
        chex.assert_trees_all_close(zero_weight, subset, rtol=1e-6, atol=1e-6)


def test_sample_weight_changes_the_result_as_keras():
    y, p = binary_predictions()
    km = keras_metrics()
    weight = weights_for(len(y), seed=2)
    for name in ("Precision", "Recall", "AUC", "BinaryAccuracy"):
        plain, weighted = ours(getattr(metrics, name)(), y, p), ours(getattr(metrics, name)(), y, p, weight)
        assert abs(float(plain) - float(weighted)) > 1e-4, name
        np.testing.assert_allclose(weighted, keras_value(getattr(km, name)(), y, p, weight), atol=1e-6)


def test_state_shapes_known_after_first_batch_broadcast_from_init():
    ym, pm = multilabel_predictions()
    for metric in (metrics.F1Score(), metrics.AUC(multi_label=True), metrics.R2Score(None)):
        batch = jax.jit(metric.update)(metric.init(), ym, pm)  # (1,)-shaped sums broadcast to (3,)
        chex.assert_trees_all_equal(metric.merge(metric.init(), batch), batch)
        full = metric.init_for(jax.ShapeDtypeStruct(ym.shape, ym.dtype), pm)  # a fixed-shape carry
        chex.assert_trees_all_equal_shapes(full, batch)
        chex.assert_trees_all_equal(metric.merge(full, batch), batch)
        chex.assert_trees_all_equal(metrics.MetricState(metric, metric.init()).merge(metrics.MetricState(metric, batch))
                                    .result(), metric.result(batch))
        assert metric.result(batch).shape == (() if isinstance(metric, metrics.AUC) else (3,))
    assert metrics.AUC(multi_label=True, num_labels=3).init()["tp"].shape == (200, 3)


def test_auc_cost_does_not_grow_with_thresholds_times_batch():
    """Keras' bucketing: no intermediate array of an AUC update holds batch x thresholds values."""
    n, labels, thresholds = 128, 10, 200
    y = jax.ShapeDtypeStruct((n, labels), jnp.float32)
    for metric in (metrics.AUC(thresholds), metrics.AUC(thresholds, multi_label=True, num_labels=labels),
                   metrics.Precision(thresholds=list(np.linspace(0.05, 0.95, 100)))):
        jaxpr = jax.make_jaxpr(metric.update)(metric.init(), y, y).jaxpr
        sizes = [int(np.prod(v.aval.shape)) for eqn in jaxpr.eqns for v in eqn.outvars]
        assert max(sizes) < n * labels * 5, (type(metric).__name__, max(sizes))
