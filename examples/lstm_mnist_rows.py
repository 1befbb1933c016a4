"""Read each MNIST digit as a sequence of rows with an LSTM and print its test accuracy.

    python examples/lstm_mnist_rows.py

Each 28x28 digit becomes 28 time steps of 28 features (one image row per step);
an LSTM(128) reads the rows top to bottom and a Dense(10) classifies its last
output. The first 8000 digits train, the last 2000 test (dlkit.datasets.split_digits).
Runs unchanged on CPU, GPU or TPU: fit/evaluate use every local device.
"""
import dlkit
from dlkit import layers


def build_model() -> dlkit.Sequential:
    return dlkit.Sequential([
        dlkit.Input((28, 28)),
        layers.LSTM(128),
        layers.Dense(10),
    ])


def main(epochs: int = 15) -> float:
    (x_train, y_train), (x_test, y_test) = dlkit.datasets.split_digits()
    x_train, x_test = x_train.reshape(-1, 28, 28), x_test.reshape(-1, 28, 28)  # (N, steps, features)
    trainer = dlkit.Trainer(
        build_model(),
        optimizer=dlkit.optimizers.Adam(learning_rate=1e-3),
        loss=dlkit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    trainer.summary()
    trainer.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1)
    loss, accuracy = trainer.evaluate(x_test, y_test, batch_size=500)
    print(f"test loss: {loss:.4f} - test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
