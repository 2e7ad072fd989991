"""Task metrics and trivial baselines, computed with scikit-learn.

scikit-learn is in the `ml` extra: it is imported inside the functions, so importing this
module costs nothing for the device commands that never call them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _pair(y_true: np.ndarray, y_pred: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    yt: np.ndarray = np.asarray(y_true, dtype=dtype).reshape(-1)
    yp: np.ndarray = np.asarray(y_pred, dtype=dtype).reshape(-1)
    if yt.shape != yp.shape or yt.size == 0:
        raise ValueError(f"need equal non-empty arrays, got {yt.shape} and {yp.shape}")
    return yt, yp


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (R² of a constant target is 0 unless the prediction is exact)."""
    from sklearn import metrics

    yt, yp = _pair(y_true, y_pred, np.float64)
    return {
        "mae": float(metrics.mean_absolute_error(yt, yp)),
        "rmse": float(np.sqrt(metrics.mean_squared_error(yt, yp))),
        "r2": float(metrics.r2_score(yt, yp)) if yt.size > 1 else 0.0,
    }


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Accuracy, macro-F1 (over the classes present in either array) and the confusion
    matrix over all `n_classes` (rows true, columns predicted)."""
    from sklearn import metrics

    yt, yp = _pair(y_true, y_pred, np.int64)
    present = np.union1d(yt, yp)
    return {
        "accuracy": float(metrics.accuracy_score(yt, yp)),
        "macro_f1": float(metrics.f1_score(yt, yp, labels=present, average="macro",
                                           zero_division=0.0)),
        "confusion_matrix": metrics.confusion_matrix(
            yt, yp, labels=np.arange(n_classes)).tolist(),
    }


def main_metric(task: str) -> tuple[str, bool]:
    """Name of the task's headline metric and whether higher is better."""
    return ("mae", False) if task == "regression" else ("accuracy", True)


def relative_degradation(task: str, reference: dict[str, Any], candidate: dict[str, Any]) -> float:
    """How much worse `candidate` is on the main metric, relative to `reference` (>= 0 worse)."""
    name, higher_better = main_metric(task)
    ref, cand = float(reference[name]), float(candidate[name])
    if higher_better:
        return (ref - cand) / ref if ref > 0 else 0.0
    return (cand - ref) / ref if ref > 0 else (cand - ref)


#: The trivial model each task must beat (scikit-learn's dummy estimators).
BASELINE_STRATEGY = {"regression": "mean", "classification": "most_frequent"}


def baseline_metrics(
    task: str, y_train: np.ndarray, y_test: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Metrics of scikit-learn's DummyRegressor (mean) or DummyClassifier (most frequent
    class) fitted on the training targets and scored on the same test rows as the model."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    strategy = BASELINE_STRATEGY[task]
    x_tr, x_te = np.zeros((len(y_train), 1)), np.zeros((len(y_test), 1))
    if task == "classification":
        clf = DummyClassifier(strategy=strategy).fit(x_tr, y_train)
        m = classification_metrics(y_test, clf.predict(x_te), n_classes)
    else:
        reg = DummyRegressor(strategy=strategy).fit(x_tr, y_train)
        m = regression_metrics(y_test, reg.predict(x_te))
    return {"strategy": strategy, **m}


def baseline_skill(task: str, model: dict[str, Any], baseline: dict[str, Any]) -> float:
    """How much of the gap between the baseline and a perfect model the model closes on the
    main metric: 1 - MAE/MAE_base (regression), (acc - acc_base)/(1 - acc_base)
    (classification). 1 is perfect, 0 no better than the baseline, < 0 worse."""
    name, higher_better = main_metric(task)
    m, b = float(model[name]), float(baseline[name])
    if higher_better:
        return (m - b) / (1.0 - b) if b < 1.0 else (0.0 if m >= b else -1.0)
    return 1.0 - m / b if b > 0 else (0.0 if m <= b else -1.0)
