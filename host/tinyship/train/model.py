"""Build and fit the small Keras model (MLP, or a 1-D conv front end) with a fixed seed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyship.config import ModelSection, TrainingSection
from tinyship.convert.quantize import quiet_tensorflow
from tinyship.errors import ModelError


@dataclass
class TrainResult:
    #: keras.Model, float. Regression: predicts the standardized target
    #: (y - target_mean) / target_scale; classification: class probabilities.
    model: Any
    epochs_run: int
    seconds: float
    history: dict[str, list[float]]
    target_mean: float = 0.0
    target_scale: float = 1.0

    def to_target_units(self, pred: np.ndarray) -> np.ndarray:
        """Model outputs in the target's units (identity for classification)."""
        out: np.ndarray = self.target_mean + self.target_scale * np.asarray(pred, np.float64)
        return out


def build_model(n_features: int, n_outputs: int, task: str, spec: ModelSection) -> Any:
    """The network; regression outputs one linear unit, classification a softmax."""
    tf = quiet_tensorflow()
    keras = tf.keras
    layers: list[Any] = [keras.Input(shape=(n_features,), name="features")]
    if spec.type == "conv1d":
        if spec.conv_kernel > n_features:
            raise ModelError(
                f"model.conv_kernel={spec.conv_kernel} is larger than the {n_features} features"
            )
        layers += [
            keras.layers.Reshape((n_features, 1)),
            keras.layers.Conv1D(spec.conv_filters, spec.conv_kernel, activation=spec.activation),
            keras.layers.Flatten(),
        ]
    layers += [keras.layers.Dense(units, activation=spec.activation) for units in spec.hidden]
    if task == "classification":
        layers.append(keras.layers.Dense(n_outputs, activation="softmax"))
    else:
        layers.append(keras.layers.Dense(1))
    return keras.Sequential(layers, name="tinyship")


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    task: str,
    n_classes: int,
    spec: ModelSection,
    training: TrainingSection,
    on_epoch: Callable[[int, float], None] | None = None,
    initial_model: Any = None,
) -> TrainResult:
    """Train with early stopping on the validation split; `initial_model` (a warm start,
    e.g. the production champion) gives the architecture and starting weights instead of
    a fresh initialization (its inputs and outputs must match).

    For regression the model learns the standardized target and keeps predicting it: its
    int8 output range then spans the data (a TFLite range always includes 0, so a target of
    62..100 in its own units would use ~100 of 256 levels). The mean and scale travel with
    the model (manifest, C header, device INFO) so every consumer reads target units.
    """
    tf = quiet_tensorflow()
    keras = tf.keras
    keras.utils.set_random_seed(training.seed)
    n_out = n_classes if task == "classification" else 1
    if initial_model is None:
        model = build_model(x_train.shape[1], n_out, task, spec)
    else:
        want = ((None, x_train.shape[1]), (None, n_out))
        have = (tuple(initial_model.input_shape), tuple(initial_model.output_shape))
        if have != want:
            from tinyship.errors import ModelError

            raise ModelError(f"cannot warm-start: the champion takes {have[0]} and gives "
                             f"{have[1]}, this data needs {want[0]} -> {want[1]}",
                             hint="train from scratch (without --warm-start)")
        model = keras.models.clone_model(initial_model)
        model.set_weights(initial_model.get_weights())
    y_mu, y_sigma = 0.0, 1.0
    if task == "regression":
        y_mu = float(np.mean(y_train))
        y_sigma = float(np.std(y_train)) or 1.0
        yt = ((y_train - y_mu) / y_sigma).astype(np.float32)
        yv = ((y_val - y_mu) / y_sigma).astype(np.float32)
        loss = "mse"
    else:
        yt, yv = y_train.astype(np.int32), y_val.astype(np.int32)
        loss = "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(training.learning_rate), loss=loss)

    deadline = time.monotonic() + training.max_seconds

    class _Progress(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if on_epoch is not None:
                on_epoch(epoch + 1, float((logs or {}).get("val_loss", float("nan"))))
            if time.monotonic() > deadline:
                self.model.stop_training = True

    t0 = time.monotonic()
    hist = model.fit(
        x_train,
        yt,
        validation_data=(x_val, yv),
        epochs=training.epochs,
        batch_size=training.batch_size,
        verbose=0,
        shuffle=True,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=training.patience, restore_best_weights=True
            ),
            _Progress(),
        ],
    )
    seconds = time.monotonic() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return TrainResult(model, len(history.get("loss", [])), seconds, history, y_mu, y_sigma)


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Float model predictions (batch), as NumPy."""
    return np.asarray(model.predict(x, verbose=0, batch_size=1024))
