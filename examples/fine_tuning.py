"""Transfer learning, Keras' recipe, on the bundled digits.

    python examples/fine_tuning.py

1. Pretrain a CNN on digits 0-4 (with random translations as augmentation).
2. Reuse its convolutional base for digits 5-9 with 20 labels (4 per class):
   freeze the base (Keras' ``base.trainable = False``: ``trainer.freeze("base")``)
   and train a new head.
3. Compare with the same network trained from scratch on the same 20 labels,
   over 3 different draws of the labelled examples.
Optionally unfreeze the top of the base and re-compile with a lower rate
(``trainer.unfreeze("base/conv2d_1"); trainer.compile(optimizer=...)``).
"""
import numpy as np

import dlkit
from dlkit import layers


def cnn(classes: int, augment: float = 0.0) -> dlkit.Sequential:
    base = dlkit.Sequential([
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
    ], name="base")
    extra = [layers.RandomTranslation(augment, augment)] if augment else []  # no weights: base weights line up
    return dlkit.Sequential([dlkit.Input((28, 28, 1)), *extra, base, layers.Dense(classes, name="head")])


def trainer_for(model, learning_rate: float, seed: int = 0) -> dlkit.Trainer:
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(learning_rate), seed=seed,
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def few_labels(x, y, per_class: int, trial: int):
    """``per_class`` examples of each of the digits 5-9 (a different slice per trial), labels 0-4."""
    index = np.concatenate([np.flatnonzero(y == d)[per_class * trial:per_class * (trial + 1)] for d in range(5, 10)])
    return x[index], y[index] - 5


def main(trials: int = 3, per_class: int = 4, verbose: int = 1) -> list:
    (x_train, y_train), (x_test, y_test) = dlkit.datasets.split_digits()
    pretrained = trainer_for(cnn(5, augment=0.1), 1e-3)
    pretrained.fit(x_train[y_train < 5], y_train[y_train < 5], batch_size=32, epochs=5, verbose=verbose and 2)
    base_weights = pretrained.get_weights()[:-2]  # all but the head's kernel and bias
    test_x, test_y = x_test[y_test >= 5], y_test[y_test >= 5] - 5

    results = []
    for trial in range(trials):
        few_x, few_y = few_labels(x_train, y_train, per_class, trial)
        transfer = trainer_for(cnn(5), 3e-3, seed=trial)
        transfer.build(few_x)
        transfer.set_weights(base_weights + transfer.get_weights()[-2:])
        transfer.freeze("base")
        transfer.fit(few_x, few_y, batch_size=8, epochs=50, verbose=0)
        scratch = trainer_for(cnn(5), 3e-3, seed=trial)
        scratch.fit(few_x, few_y, batch_size=8, epochs=50, verbose=0)
        results.append((transfer.evaluate(test_x, test_y, verbose=0)[1],
                        scratch.evaluate(test_x, test_y, verbose=0)[1]))
        if verbose:
            print(f"trial {trial}: {len(few_x)} labels - transferred base {results[-1][0]:.4f} - "
                  f"from scratch {results[-1][1]:.4f}")
    return results


if __name__ == "__main__":
    main()
