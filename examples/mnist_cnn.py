"""Train a small CNN on the bundled MNIST digits and print its test accuracy.

    python examples/mnist_cnn.py

The first 8000 digits train, the last 2000 test (dlkit.datasets.split_digits).
Runs unchanged on CPU, GPU or TPU: fit/evaluate use every local device.
"""
import dlkit
from dlkit import layers


def build_model() -> dlkit.Sequential:
    return dlkit.Sequential([
        dlkit.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.AveragePooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dense(10),
    ])


def main(epochs: int = 3) -> float:
    (x_train, y_train), (x_test, y_test) = dlkit.datasets.split_digits()
    trainer = dlkit.Trainer(
        build_model(),
        optimizer=dlkit.optimizers.Adam(learning_rate=1e-3),
        loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    trainer.summary()
    trainer.fit(x_train, y_train, batch_size=32, epochs=epochs, validation_split=0.1)
    loss, accuracy = trainer.evaluate(x_test, y_test, batch_size=500)
    print(f"test loss: {loss:.4f} - test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
