"""Task metrics in NumPy, so device-side validation computes them without TensorFlow."""

from __future__ import annotations

from typing import Any

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (R² is 0 for a constant target rather than undefined)."""
    yt = np.asarray(y_true, dtype=np.float64).reshape(-1)
    yp = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if yt.shape != yp.shape or yt.size == 0:
        raise ValueError(f"need equal non-empty arrays, got {yt.shape} and {yp.shape}")
    err = yp - yt
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0,
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return cm


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int
) -> dict[str, Any]:
    """Accuracy, macro-F1 (classes absent from both sides are skipped) and the confusion matrix."""
    yt = np.asarray(y_true, dtype=int).reshape(-1)
    yp = np.asarray(y_pred, dtype=int).reshape(-1)
    if yt.shape != yp.shape or yt.size == 0:
        raise ValueError(f"need equal non-empty arrays, got {yt.shape} and {yp.shape}")
    cm = confusion_matrix(yt, yp, n_classes)
    f1s = []
    for k in range(n_classes):
        tp = cm[k, k]
        fp = cm[:, k].sum() - tp
        fn = cm[k, :].sum() - tp
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "accuracy": float(np.mean(yt == yp)),
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "confusion_matrix": cm.tolist(),
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
