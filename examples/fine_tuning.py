"""Transfer learning and fine-tuning, Keras' recipe, on the bundled digits.

    python examples/fine_tuning.py

1. Pretrain a CNN on digits 0-4.
2. Reuse its convolutional base for digits 5-9 with few labels: freeze the base
   (Keras' ``base.trainable = False``: ``trainer.freeze("base")``), train a new head.
3. Unfreeze the top of the base and re-compile with a lower learning rate; train jointly.
A network trained from scratch on the same few labels is the baseline; both are printed.
"""
import dlkit
from dlkit import layers


def cnn(classes: int) -> dlkit.Sequential:
    base = dlkit.Sequential([
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2), layers.Flatten(),
    ], name="base")
    return dlkit.Sequential([dlkit.Input((28, 28, 1)), base, layers.Dense(classes, name="head")])


def trainer_for(model, learning_rate=3e-3):
    return dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(learning_rate),
                         loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def main(labels: int = 100) -> dict:
    (x_train, y_train), (x_test, y_test) = dlkit.datasets.split_digits()
    low, high = y_train < 5, y_train >= 5
    pretrained = trainer_for(cnn(5), 1e-3)
    pretrained.fit(x_train[low], y_train[low], epochs=2, verbose=2)

    few_x, few_y = x_train[high][:labels], y_train[high][:labels] - 5
    test_x, test_y = x_test[y_test >= 5], y_test[y_test >= 5] - 5

    transfer = trainer_for(cnn(5))
    transfer.build(few_x)
    base_weights = len(pretrained.get_weights()) - 2  # all but the head's kernel and bias
    transfer.set_weights(pretrained.get_weights()[:base_weights] + transfer.get_weights()[base_weights:])
    transfer.freeze("base")
    transfer.summary()
    transfer.fit(few_x, few_y, epochs=30, verbose=0)
    frozen_accuracy = transfer.evaluate(test_x, test_y, verbose=0)[1]
    transfer.unfreeze("base/conv2d_1")
    transfer.compile(optimizer=dlkit.optimizers.Adam(3e-4))
    transfer.fit(few_x, few_y, epochs=15, verbose=0)
    fine_tuned_accuracy = transfer.evaluate(test_x, test_y, verbose=0)[1]

    scratch = trainer_for(cnn(5))
    scratch.fit(few_x, few_y, epochs=45, verbose=0)
    scratch_accuracy = scratch.evaluate(test_x, test_y, verbose=0)[1]
    result = {"frozen base": frozen_accuracy, "fine-tuned": fine_tuned_accuracy, "from scratch": scratch_accuracy}
    for name, value in result.items():
        print(f"{name:>12}: {value:.4f} test accuracy on digits 5-9 with {labels} labels")
    return result


if __name__ == "__main__":
    main()
