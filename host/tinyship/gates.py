"""Quality gates: every check a model must pass before it may enter the registry.

Each gate reports its value and threshold, so a failed run says exactly what to fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tinyship.config import Config


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
    degradation: float
    parity_lsb: int
    pred_min: float | None
    pred_max: float | None
    model_bytes: int
    arena_bytes: int
    train_seconds: float
    profile_problems: list[str]


def _le(name: str, value: float, threshold: float, detail: str = "") -> GateResult:
    return GateResult(name, value, threshold, bool(value <= threshold), "<=", detail)


def _ge(name: str, value: float, threshold: float, detail: str = "") -> GateResult:
    return GateResult(name, value, threshold, bool(value >= threshold), ">=", detail)


def evaluate(cfg: Config, m: GateInputs) -> list[GateResult]:
    """All gates for this config and run; thresholds left unset in the config are skipped."""
    g = cfg.gates
    out: list[GateResult] = []
    mi = m.metrics_int8
    if m.task == "regression":
        if g.min_r2 is not None:
            out.append(_ge("r2_int8", mi["r2"], g.min_r2))
        if g.max_mae is not None:
            out.append(_le("mae_int8", mi["mae"], g.max_mae))
        if g.max_rmse is not None:
            out.append(_le("rmse_int8", mi["rmse"], g.max_rmse))
        tail = mi.get("long_tail")
        if g.max_long_tail_mae is not None and tail:
            out.append(_le("long_tail_mae_int8", tail["mae"], g.max_long_tail_mae,
                           f"{tail['rows']} rows, {tail['slice']}"))
    else:
        if g.min_accuracy is not None:
            out.append(_ge("accuracy_int8", mi["accuracy"], g.min_accuracy))
        if g.min_macro_f1 is not None:
            out.append(_ge("macro_f1_int8", mi["macro_f1"], g.min_macro_f1))
    out.append(_le("int8_degradation", m.degradation, g.max_int8_degradation,
                   "relative loss of the main metric, int8 vs float"))
    out.append(_le("tflite_tflm_parity_lsb", m.parity_lsb, g.max_parity_lsb,
                   "max |TFLite - TFLM| int8 output difference on the test set"))
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
