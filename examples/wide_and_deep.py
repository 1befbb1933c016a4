"""A wide-and-deep regression model with the functional API, on scikit-learn's diabetes data.

    python examples/wide_and_deep.py

The wide part sees the raw features linearly; the deep part learns a
non-linear representation; both meet in one output (Cheng et al., 2016).
Features are standardised with statistics of the training part only.
"""
import numpy as np
from sklearn.datasets import load_diabetes

import dlkit
from dlkit import layers


def build_model(n_features: int) -> dlkit.Model:
    wide = dlkit.Input((n_features,), name="wide")
    deep = dlkit.Input((n_features,), name="deep")
    hidden = layers.Dense(32, activation="relu")(deep)
    hidden = layers.Dense(16, activation="relu")(hidden)
    merged = layers.concatenate([wide, hidden])
    return dlkit.Model({"wide": wide, "deep": deep}, layers.Dense(1, name="output")(merged))


def main(epochs: int = 100, verbose: int = 2) -> dict:
    x, y = load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order].astype(np.float32), y[order].astype(np.float32)
    x_train, y_train, x_test, y_test = x[:350], y[:350], x[350:], y[350:]
    normalize = layers.Normalization().adapt(x_train)  # training statistics only
    x_train, x_test = np.asarray(normalize(x_train)), np.asarray(normalize(x_test))
    scale = y_train.std()
    trainer = dlkit.Trainer(build_model(x.shape[1]), optimizer=dlkit.optimizers.Adam(3e-3), loss="mse",
                            metrics=["mae"])
    trainer.summary()
    trainer.fit({"wide": x_train, "deep": x_train}, y_train / scale, batch_size=32, epochs=epochs,
                validation_split=0.15, verbose=verbose,
                callbacks=[dlkit.callbacks.EarlyStopping(patience=15, restore_best_weights=True)])
    test_mae = trainer.evaluate({"wide": x_test, "deep": x_test}, y_test / scale, verbose=0)[1] * scale
    baseline_mae = float(np.mean(np.abs(y_test - y_train.mean())))
    print(f"test MAE: {test_mae:.1f} (predicting the training mean: {baseline_mae:.1f})")
    return {"test_mae": test_mae, "baseline_mae": baseline_mae}


if __name__ == "__main__":
    main()
