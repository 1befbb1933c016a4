"""Streaming metrics through the loop: fit with validation, evaluate, weighted metrics, several outputs and
custom steps, checked against scikit-learn on the trained models' own predictions."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import datasets as skdatasets
from sklearn import metrics as skm
from sklearn.preprocessing import StandardScaler

import dlkit
from dlkit import layers
from dlkit import metrics as M  # noqa: N812 - short for the many metric classes below
from dlkit.training import apply, masked_mean


@pytest.fixture(scope="module")
def breast_cancer():
    x, y = skdatasets.load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(x))
    x, y = x[order], y[order].astype(np.float32)
    x = StandardScaler().fit(x[:450]).transform(x).astype(np.float32)
    return x[:450], y[:450], x[450:], y[450:]


@pytest.fixture(scope="module")
def binary_trainer(breast_cancer):
    x, y, _, _ = breast_cancer
    model = dlkit.Sequential([dlkit.Input((30,)), layers.Dense(8, activation="relu"),
                              layers.Dense(1, activation="sigmoid")])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(0.01), loss="binary_crossentropy",
                            metrics=["AUC", "Precision", "Recall", M.AUC(curve="PR", name="pr_auc"),
                                     M.F1Score(threshold=0.5)])
    history = trainer.fit(x, y, batch_size=32, epochs=8, validation_split=0.2, verbose=0)
    return trainer, history


def test_auc_precision_recall_in_fit_with_validation_split_and_in_evaluate(breast_cancer, binary_trainer):
    x, y, x_test, y_test = breast_cancer
    trainer, history = binary_trainer
    names = ["loss", "AUC", "Precision", "Recall", "pr_auc", "f1_score"]
    assert list(history.history) == names + [f"val_{n}" for n in names]  # Keras keeps the names users wrote
    assert history.history["val_AUC"][-1] > 0.95
    logs = trainer.evaluate(x_test, y_test, batch_size=50, return_dict=True)
    p = trainer.predict(x_test)[:, 0]
    predicted = p > 0.5
    np.testing.assert_allclose(logs["Precision"], skm.precision_score(y_test, predicted), atol=1e-6)
    np.testing.assert_allclose(logs["Recall"], skm.recall_score(y_test, predicted), atol=1e-6)
    np.testing.assert_allclose(logs["f1_score"], [skm.f1_score(y_test, predicted)], atol=1e-6)
    np.testing.assert_allclose(logs["AUC"], skm.roc_auc_score(y_test, p), atol=1e-3)
    np.testing.assert_allclose(logs["pr_auc"], skm.average_precision_score(y_test, p), atol=1e-2)
    # validation ran on the last 20% of the training data with the final weights
    val = trainer.evaluate(x[360:], y[360:], return_dict=True)
    chex.assert_trees_all_close({k: val[k] for k in names}, {k: history.history[f"val_{k}"][-1] for k in names},
                                rtol=1e-6)


def test_epoch_values_are_exact_whatever_the_batch_size(breast_cancer, binary_trainer):
    _, _, x_test, y_test = breast_cancer  # 119 samples: every batch size below leaves a padded last batch
    trainer, _ = binary_trainer
    results = [trainer.evaluate(x_test, y_test, batch_size=size, return_dict=True) for size in (7, 32, 119, 500)]
    counted = ["AUC", "Precision", "Recall", "pr_auc", "f1_score"]
    for other in results[1:]:
        chex.assert_trees_all_equal({k: results[0][k] for k in counted}, {k: other[k] for k in counted})
        np.testing.assert_allclose(other["loss"], results[0]["loss"], rtol=1e-6)


def test_weighted_metrics_use_the_sample_weight_and_plain_metrics_ignore_it(digits8x8):
    x, y = digits8x8[0][:600], digits8x8[1][:600]
    weight = np.where(y % 2 == 0, 3.0, 1.0).astype(np.float32)
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((64,)), layers.Dense(10)]), optimizer="adam",
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True),
                            metrics=["accuracy"], weighted_metrics=["accuracy"])
    history = trainer.fit(x, y, sample_weight=weight, epochs=2, verbose=0)
    assert list(history.history) == ["loss", "accuracy", "weighted_accuracy"]
    logs = trainer.evaluate(x, y, sample_weight=weight, return_dict=True)
    correct = trainer.predict(x).argmax(-1) == y
    np.testing.assert_allclose(logs["accuracy"], correct.mean(), atol=1e-6)
    np.testing.assert_allclose(logs["weighted_accuracy"], np.average(correct, weights=weight), atol=1e-6)
    assert abs(logs["weighted_accuracy"] - logs["accuracy"]) > 1e-4


def test_cnn_top_k_and_per_class_metrics_match_sklearn():
    (x, y), (x_test, y_test) = dlkit.datasets.split_digits()
    x, y = x[:3000], y[:3000]
    model = dlkit.Sequential([dlkit.Input((28, 28, 1)), layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2),
                              layers.Flatten(), layers.Dense(10, activation="softmax")])
    trainer = dlkit.Trainer(model, optimizer="adam", loss="categorical_crossentropy",
                            metrics=[M.TopKCategoricalAccuracy(k=2), M.Precision(class_id=3, name="precision_3"),
                                     M.Recall(class_id=3, name="recall_3"), M.F1Score(average="macro"),
                                     M.F1Score(name="f1_per_class")])
    history = trainer.fit(x, dlkit.utils.to_categorical(y, 10), batch_size=64, epochs=2, verbose=0)
    assert history.history["top_k_categorical_accuracy"][-1] > 0.9
    logs = trainer.evaluate(x_test, dlkit.utils.to_categorical(y_test, 10), batch_size=128, return_dict=True)
    p = trainer.predict(x_test)
    np.testing.assert_allclose(logs["top_k_categorical_accuracy"], skm.top_k_accuracy_score(y_test, p, k=2),
                               atol=1e-6)
    np.testing.assert_allclose(logs["precision_3"], skm.precision_score(y_test == 3, p[:, 3] > 0.5), atol=1e-6)
    np.testing.assert_allclose(logs["recall_3"], skm.recall_score(y_test == 3, p[:, 3] > 0.5), atol=1e-6)
    np.testing.assert_allclose(logs["f1_score"], skm.f1_score(y_test, p.argmax(-1), average="macro"), atol=1e-6)
    chex.assert_shape(logs["f1_per_class"], (10,))
    np.testing.assert_allclose(logs["f1_per_class"], skm.f1_score(y_test, p.argmax(-1), average=None), atol=1e-6)


def test_multi_label_mean_average_precision_matches_sklearn(digits8x8):
    x, digit = digits8x8
    labels = np.stack([digit % 2 == 0, digit > 4, np.isin(digit, [2, 3, 5, 7])], -1).astype(np.float32)
    model = dlkit.Sequential([dlkit.Input((64,)), layers.Dense(32, activation="relu"),
                              layers.Dense(3, activation="sigmoid")])
    trainer = dlkit.Trainer(model, optimizer="adam", loss="binary_crossentropy",
                            metrics=[M.MeanAveragePrecision(name="map"), M.AUC(multi_label=True, name="auc")])
    trainer.fit(x[:1400], labels[:1400], epochs=10, verbose=0)
    logs = trainer.evaluate(x[1400:], labels[1400:], return_dict=True)
    p = trainer.predict(x[1400:])
    expected = skm.average_precision_score(labels[1400:], p, average="macro")
    assert expected > 0.85  # the model learned the labels
    np.testing.assert_allclose(logs["map"], expected, atol=1e-2)
    np.testing.assert_allclose(logs["auc"], skm.roc_auc_score(labels[1400:], p, average="macro"), atol=1e-3)


def test_metrics_per_output_of_a_two_output_model(digits8x8):
    x, digit = digits8x8
    inputs = dlkit.Input((64,))
    hidden = layers.Dense(32, activation="relu")(inputs)
    outputs = {"digit": layers.Dense(10, activation="softmax")(hidden),
               "even": layers.Dense(1, activation="sigmoid")(hidden)}
    trainer = dlkit.Trainer(dlkit.Model(inputs, outputs), optimizer="adam",
                            loss={"digit": "sparse_categorical_crossentropy", "even": "binary_crossentropy"},
                            metrics={"digit": ["accuracy", M.SparseTopKCategoricalAccuracy(k=3)], "even": ["AUC"]})
    y = {"digit": digit, "even": (digit % 2 == 0).astype(np.float32)}
    history = trainer.fit(x[:1400], {k: v[:1400] for k, v in y.items()}, epochs=5, verbose=0,
                          validation_data=(x[1400:], {k: v[1400:] for k, v in y.items()}))
    assert {"digit_accuracy", "digit_sparse_top_k_categorical_accuracy", "even_AUC", "val_even_AUC"} <= set(
        history.history)
    p = trainer.predict(x[1400:])
    np.testing.assert_allclose(history.history["val_even_AUC"][-1],
                               skm.roc_auc_score(y["even"][1400:], p["even"][:, 0]), atol=1e-3)
    np.testing.assert_allclose(history.history["val_digit_sparse_top_k_categorical_accuracy"][-1],
                               skm.top_k_accuracy_score(digit[1400:], p["digit"], k=3), atol=1e-6)


def test_a_custom_step_returns_metric_states_that_the_loop_merges(digits8x8):
    x, y = digits8x8
    precision = M.Precision(class_id=1, name="precision_1")

    def train_step(state, batch):
        def loss_fn(params):
            out = apply(state, batch.x, params)
            return masked_mean(optax.softmax_cross_entropy_with_integer_labels(out.outputs, batch.y), batch.mask), out

        (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads), {"loss": loss, **test_logs(batch, out.outputs)}

    def test_logs(batch, logits):
        probs = jax.nn.softmax(logits, -1)
        return {"precision_1": precision.measure(jnp.eye(10)[batch.y], probs, mask=batch.mask)}

    def test_step(state, batch):
        return test_logs(batch, apply(state, batch.x, training=False).outputs)

    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.Input((64,)), layers.Dense(10)]),
                            optimizer=dlkit.optimizers.Adam(0.02), train_step=train_step, test_step=test_step)
    history = trainer.fit(x[:1400], y[:1400], epochs=3, batch_size=100, verbose=0, validation_data=(x[1400:], y[1400:]))
    assert list(history.history) == ["loss", "precision_1", "val_precision_1"]
    probs = np.asarray(jax.nn.softmax(trainer.predict(x[1400:])))
    expected = skm.precision_score(y[1400:] == 1, probs[:, 1] > 0.5)
    assert 0.5 < expected < 1.0  # a meaningful comparison
    np.testing.assert_allclose(history.history["val_precision_1"][-1], expected, atol=1e-6)
    np.testing.assert_allclose(trainer.evaluate(x[1400:], y[1400:], batch_size=33), expected, atol=1e-6)

