import matplotlib.image
import numpy as np
import pytest

import dlkit


@pytest.fixture(scope="module")
def history(digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.layers.Dense(10)]), optimizer="adam",
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return trainer.fit(x[:400], y[:400], epochs=3, validation_split=0.25, verbose=0)


def test_plot_history_draws_each_metric_s_curves_on_shared_axes(tmp_path, history):
    path = tmp_path / "curves.png"
    figure = dlkit.plot_history(history, str(path))
    logs = history.history
    assert [axis.get_title() for axis in figure.axes] == ["loss", "accuracy"]
    for axis, name in zip(figure.axes, ["loss", "accuracy"]):
        training, validation, best = axis.lines
        for line, key in ((training, name), (validation, f"val_{name}")):
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])  # epochs, 1-based
            np.testing.assert_array_equal(line.get_ydata(), logs[key])
        assert validation.get_linestyle() == "--"
        np.testing.assert_array_equal(best.get_ydata(), [logs[f"val_{name}"][int(best.get_xdata()[0]) - 1]])
    image = matplotlib.image.imread(path)  # the PNG too: two panels
    assert image.shape[:2] == (350, 900) and image[..., :3].std() > 0.05


def test_the_best_epoch_is_the_minimum_of_a_loss_and_the_maximum_of_an_accuracy():
    logs = {"loss": [1.0, 0.5, 0.4, 0.3], "val_loss": [1.0, 0.6, 0.7, 0.6], "accuracy": [0.2, 0.4, 0.6, 0.7],
            "val_accuracy": [0.3, 0.5, 0.5, 0.4], "auc": [0.5, 0.7, 0.9, 0.8]}
    figure = dlkit.plot_history(logs)
    best = {axis.get_title(): (axis.lines[-1].get_xdata()[0], axis.lines[-1].get_ydata()[0]) for axis in figure.axes}
    # val_loss lowest at epoch 2 (0.6, tied later: the first counts, as EarlyStopping keeps it); val_accuracy
    # highest at epoch 2 (tied at 3); auc has no validation curve: its training curve's maximum, epoch 3.
    assert best == {"loss": (2, 0.6), "accuracy": (2, 0.5), "auc": (3, 0.9)}
    assert [len(axis.lines) for axis in figure.axes] == [3, 3, 2]
    assert dlkit.plotting.best_epoch([0.3, float("nan"), 0.1], "val_mean_absolute_error") == 2
    only = dlkit.plot_history(logs, metrics=["auc"])
    assert len(only.axes) == 1


def test_plot_history_refuses_an_empty_history_or_a_missing_metric(history):
    with pytest.raises(ValueError, match="No 'auc' in the history"):
        dlkit.plot_history(history, metrics=["auc"])
    with pytest.raises(ValueError, match="holds no values"):
        dlkit.plot_history({})
