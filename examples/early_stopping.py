"""Early stopping, learning-rate reduction, checkpoints and training curves on the bundled digits.

    python examples/early_stopping.py

Trains an MLP with a validation split; EarlyStopping restores the best epoch's
weights, ReduceLROnPlateau lowers the learning rate when validation loss
stalls, ModelCheckpoint keeps the best state with Orbax, and the curves are
drawn to training_curves.png.
"""
import tempfile

import dlkit
from dlkit import layers


def main(epochs: int = 40) -> float:
    (x_train, y_train), (x_test, y_test) = dlkit.datasets.split_digits()
    model = dlkit.Sequential([
        dlkit.Input((28, 28, 1)),
        layers.Flatten(),
        layers.Dense(256, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(10, activation="softmax"),
    ])
    trainer = dlkit.Trainer(model, optimizer=dlkit.optimizers.Adam(1e-3),
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    checkpoints = tempfile.mkdtemp(prefix="dlkit-best-")
    history = trainer.fit(
        x_train, y_train, batch_size=64, epochs=epochs, validation_split=0.2, verbose=2,
        callbacks=[
            dlkit.callbacks.EarlyStopping(monitor="val_loss", patience=4, restore_best_weights=True),
            dlkit.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=2),
            dlkit.callbacks.ModelCheckpoint(checkpoints, monitor="val_accuracy", save_best_only=True),
        ])
    print(f"stopped after {len(history.history['loss'])} epochs; best checkpoint in {checkpoints}")
    dlkit.plot_history(history, "training_curves.png")
    _, accuracy = trainer.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main()
