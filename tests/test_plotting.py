import matplotlib.image
import pytest

import dlkit


def test_plot_history_draws_training_and_validation_curves(tmp_path, digits8x8):
    x, y = digits8x8
    trainer = dlkit.Trainer(dlkit.Sequential([dlkit.layers.Dense(10)]), optimizer="adam",
                            loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = trainer.fit(x[:400], y[:400], epochs=3, validation_split=0.25, verbose=0)
    path = dlkit.plot_history(history, str(tmp_path / "curves.png"))
    image = matplotlib.image.imread(path)
    assert image.shape[0] == 350 and image.shape[1] == 900  # two panels: loss and accuracy
    assert image[..., :3].std() > 0.05  # something was drawn
    with pytest.raises(ValueError, match="No 'auc' in the history"):
        dlkit.plot_history(history, str(tmp_path / "x.png"), metrics=["auc"])
