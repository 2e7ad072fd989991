"""Quality gates: every check a model must pass before it may enter the registry.

Each gate reports its value and threshold, so a failed run says exactly what to fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tinyship.config import DEFAULT_METRIC_GATES, Config


@dataclass(frozen=True)
class GateResult:
    name: str
    value: float | int | str | None
    threshold: float | int | str | None
    passed: bool
    #: How value is compared with threshold: "<=", ">=", "within", "==".
    op: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateInputs:
    """Measurements from one pipeline run that the gates judge."""

    task: str
    metrics_int8: dict[str, Any]
    metrics_float: dict[str, Any]
    #: scikit-learn dummy baseline on the same split (`train.metrics.baseline_metrics`).
    metrics_baseline: dict[str, Any]
    degradation: float
    parity_lsb: int
    #: What `parity_lsb` was measured on, and which test rows differ (for the detail).
    parity_detail: str
    pred_min: float | None
    pred_max: float | None
    #: Regression: one int8 output step in target units.
    output_step: float | None
    model_bytes: int
    arena_bytes: int
    train_seconds: float
    profile_problems: list[str]


#: What a user can do about each failed gate (shown as the error's hint).
GATE_HINTS: dict[str, str] = {
    "baseline_skill": "the model is hardly better than always predicting the training mean or"
    " most frequent class: check that the features carry signal (are the labels aligned with"
    " the rows?), train longer or use a larger model",
    "tflite_tflm_parity_lsb": "the device runs TFLite Micro and the registry's reference"
    " outputs are TFLM's; a larger difference means the runtimes compute this model"
    " differently: try quantization.profile = \"tflm-current\" or more"
    " quantization.representative_samples, or raise gates.max_parity_lsb if you accept it",
    "int8_degradation": "int8 loses too much against float: more"
    " quantization.representative_samples, a smaller learning rate, or the tflm-current"
    " profile (per-channel weights) if the firmware's runtime supports it",
    "output_step": "the int8 output is too coarse for this model's accuracy: narrow the"
    " target's range (drop outliers) or raise gates.max_output_step_mae_ratio",
    "profile_compatible": "train with the profile the firmware's TFLM library can run"
    " (tinyship train --profile ...)",
}


def _le(name: str, value: float, threshold: float, detail: str = "") -> GateResult:
    return GateResult(name, value, threshold, bool(value <= threshold), "<=", detail)


def _ge(name: str, value: float, threshold: float, detail: str = "") -> GateResult:
    return GateResult(name, value, threshold, bool(value >= threshold), ">=", detail)


def _metric_gates(cfg: Config, m: GateInputs) -> list[GateResult]:
    """The task's metric gates; the task's default gate when the config sets none."""
    g = cfg.gates
    mi = m.metrics_int8
    if m.task == "regression":
        wanted = {"min_r2": g.min_r2, "max_mae": g.max_mae, "max_rmse": g.max_rmse}
    else:
        wanted = {"min_accuracy": g.min_accuracy, "min_macro_f1": g.min_macro_f1}
    detail = ""
    if all(v is None for v in wanted.values()):
        wanted = dict(DEFAULT_METRIC_GATES[m.task])
        detail = f"default: set gates.{next(iter(wanted))} (or another {m.task} gate)"
    out: list[GateResult] = []
    for key, threshold in wanted.items():
        if threshold is None:
            continue
        metric = key.split("_", 1)[1]
        name = f"{metric}_int8"
        out.append(_ge(name, mi[metric], threshold, detail) if key.startswith("min_")
                   else _le(name, mi[metric], threshold, detail))
    tail = mi.get("long_tail")
    if m.task == "regression" and g.max_long_tail_mae is not None and tail:
        out.append(_le("long_tail_mae_int8", tail["mae"], g.max_long_tail_mae,
                       f"{tail['rows']} rows, {tail['slice']}"))
    return out


def evaluate(cfg: Config, m: GateInputs) -> list[GateResult]:
    """All gates for this config and run, each with its value and threshold."""
    from tinyship.train.metrics import baseline_skill, main_metric

    g = cfg.gates
    out = _metric_gates(cfg, m)
    name, _ = main_metric(m.task)
    base = m.metrics_baseline
    out.append(_ge(
        "baseline_skill", round(baseline_skill(m.task, m.metrics_int8, base), 6),
        g.min_baseline_skill,
        f"int8 {name} {m.metrics_int8[name]:.4g} vs {base[name]:.4g} for a trivial baseline "
        f"(scikit-learn Dummy, strategy {base['strategy']}) on the same split"))
    out.append(_le("int8_degradation", m.degradation, g.max_int8_degradation,
                   "relative loss of the main metric, int8 vs float"))
    out.append(_le("tflite_tflm_parity_lsb", m.parity_lsb, g.max_parity_lsb, m.parity_detail))
    if m.task == "regression" and m.output_step is not None:
        mae = float(m.metrics_float["mae"])
        out.append(_le("output_step", round(m.output_step, 6),
                       round(g.max_output_step_mae_ratio * mae, 6),
                       f"one int8 output step in {cfg.data.target} units, at most "
                       f"{g.max_output_step_mae_ratio:g} x the float MAE {mae:.4g}"))
    if g.output_range is not None and m.pred_min is not None and m.pred_max is not None:
        lo, hi = g.output_range
        ok = lo <= m.pred_min and m.pred_max <= hi
        out.append(GateResult("output_range", f"[{m.pred_min:.4g}, {m.pred_max:.4g}]",
                              f"[{lo:g}, {hi:g}]", ok, "within",
                              "int8 predictions on the test set"))
    out.append(_le("model_bytes", m.model_bytes, cfg.board.model_max_bytes,
                   f"board {cfg.board.name}"))
    out.append(_le("arena_bytes", m.arena_bytes, cfg.board.arena_max_bytes,
                   f"board {cfg.board.name}"))
    out.append(_le("train_seconds", round(m.train_seconds, 2), cfg.training.max_seconds))
    out.append(GateResult("profile_compatible", "; ".join(m.profile_problems) or "ok",
                          cfg.quantization.profile, not m.profile_problems, "=="))
    return out
