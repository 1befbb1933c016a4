"""Transfer learning, Keras' recipe in Keras' words, on the bundled digits.

    python examples/fine_tuning.py

1. Pretrain a small ResNet base (``dlkit.models.resnet(..., include_top=False)``: 7x7x32 features)
   under a ``Flatten`` + 5-way ``Dense`` head on digits 0-4, with augmentation, for 2 epochs.
2. Digits 5-9 with 20 labels (4 per class): put the same ``base`` object, frozen
   (``base.trainable = False``), under a new head in a new model and a new ``Trainer``; the base
   comes with its trained weights, as a Keras layer object does. The base is called with
   ``training=False``, so its BatchNormalization layers stay in inference mode, as Keras'
   transfer-learning guide advises, also once unfrozen. Train the head.
3. Fine-tune: unfreeze the top residual block of the base (``layer.trainable = True``), re-compile
   with a 10x lower learning rate (``trainer.compile(optimizer=...)``, weights kept) and train on.
4. Compare with the same network trained from scratch on the same 20 labels for as many epochs,
   over 3 different draws of the labelled examples (each draw starts again from the pretrained
   base: ``base.set_weights(pretrained)``).

Measured (test accuracy on digits 5-9; frozen base / fine-tuned / from scratch): 0.8745 / 0.8745 /
0.7510, 0.7853 / 0.8029 / 0.6712, 0.7687 / 0.8320 / 0.5135; about 50 s in all on a 2-core CPU,
mostly compiling.
"""
import os
import sys

import numpy as np

import dlkit
from dlkit import layers
from dlkit.models import resnet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resnet_digits  # noqa: E402 - the same augmentation

TOP_BLOCK = "stage3_block1"  # the base's last residual block: its layers' names start with it


def base_model() -> dlkit.Model:
    """The convolutional base: a small ResNet without its top, 7x7x32 features per image."""
    return resnet((28, 28, 1), filters=(8, 16, 32), momentum=0.9, include_top=False, name="base")


def classifier(base: dlkit.Model, classes: int = 5, augment: bool = False, base_training=None) -> dlkit.Model:
    """(Augmentation,) ``base``, ``Flatten`` and a new ``Dense`` head; ``base_training=False`` keeps the
    base's BatchNormalization in inference mode (Keras' ``base(x, training=False)``)."""
    inputs = dlkit.Input((28, 28, 1))
    x = inputs
    for layer in resnet_digits.augmentation() if augment else []:
        x = layer(x)
    x = base(x) if base_training is None else base(x, training=base_training)
    return dlkit.Model(inputs, layers.Dense(classes, name="head")(layers.Flatten()(x)))


def compiled(model, learning_rate: float, seed: int = 0) -> dlkit.Trainer:
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(learning_rate), seed=seed,
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def few_labels(x, y, per_class: int, trial: int):
    """``per_class`` examples of each of the digits 5-9 (a different slice per trial), labels 0-4."""
    index = np.concatenate([np.flatnonzero(y == d)[per_class * trial:per_class * (trial + 1)] for d in range(5, 10)])
    return x[index], y[index] - 5


def main(trials: int = 3, per_class: int = 4, epochs: int = 30, fine_tune_epochs: int = 20,
         verbose: int = 1) -> list:
    """Returns ``[(frozen base, fine-tuned, from scratch) test accuracy on digits 5-9, ...]``, one per trial."""
    (x_train, y_train), (x_test, y_test) = dlkit.datasets.split_digits()
    base = base_model()
    pretrain = compiled(classifier(base, augment=True), 3e-3)
    pretrain.fit(x_train[y_train < 5], y_train[y_train < 5], batch_size=64, epochs=2, verbose=verbose and 2)
    pretrained = base.get_weights()  # the base's trained weights and batch statistics, in Keras' order
    test_x, test_y = x_test[y_test >= 5], y_test[y_test >= 5] - 5

    results = []
    for trial in range(trials):
        few_x, few_y = few_labels(x_train, y_train, per_class, trial)
        base.set_weights(pretrained)  # each draw starts from the pretrained base
        base.trainable = False
        transfer = compiled(classifier(base, base_training=False), 3e-3, seed=trial)
        transfer.fit(few_x, few_y, batch_size=8, epochs=epochs, verbose=0)
        frozen = transfer.evaluate(test_x, test_y, verbose=0)[1]

        for name, layer in base.named_layers():  # unfreeze the top block only
            layer.trainable = name.startswith(TOP_BLOCK)
        transfer.compile(optimizer=dlkit.optimizers.Adam(3e-4))  # the flags take effect; weights kept
        transfer.fit(few_x, few_y, batch_size=8, epochs=fine_tune_epochs, verbose=0)
        fine_tuned = transfer.evaluate(test_x, test_y, verbose=0)[1]

        scratch = compiled(classifier(base_model()), 3e-3, seed=trial)
        scratch.fit(few_x, few_y, batch_size=8, epochs=epochs + fine_tune_epochs, verbose=0)
        results.append((frozen, fine_tuned, scratch.evaluate(test_x, test_y, verbose=0)[1]))
        if verbose:
            print(f"trial {trial}: {len(few_x)} labels - frozen base {frozen:.4f} - fine-tuned {fine_tuned:.4f} - "
                  f"from scratch {results[-1][2]:.4f}")
    return results


if __name__ == "__main__":
    main()
