"""When retraining is due: each trigger of `[retrain]` with its value, its threshold and
whether it fired, so the report says why the job ran (or did not).

Triggers: schedule (days since production was trained), volume (new labelled rows since
its training data), performance (production's error on the new rows against its own
registered test error, overall and on the long tail; classification: accuracy and
macro-F1), data drift (a PSI alert on a critical feature, or any feature when none is
marked), prediction drift (two-sample KS of production's predictions on the new rows
against its training predictions) and manual (`--force`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from tinyship.config import RetrainSection

#: What a drift trigger says when production has no drift profile to compare with.
UNAVAILABLE = ("unavailable: production has no drift profile (trained before profiles were "
               "stored); `--force` retrains it")


@dataclass(frozen=True)
class Trigger:
    name: str
    fired: bool
    value: float | str | None
    threshold: float | str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(now: float, before: float, higher_is_worse: bool) -> float:
    """Relative change of an error (higher worse) or a score (lower worse)."""
    if before == 0:
        return 0.0 if now == before else float("inf")
    change = (now - before) / abs(before)
    return change if higher_is_worse else -change


def schedule(cfg: RetrainSection, trained_at: str | None, now: dt.datetime) -> Trigger:
    if trained_at is None:
        return Trigger("schedule", True, None, cfg.schedule_days,
                       "production's training time is unknown")
    age = (now - dt.datetime.fromisoformat(trained_at)).total_seconds() / 86400
    return Trigger("schedule", age >= cfg.schedule_days, round(age, 2), cfg.schedule_days,
                   f"{age:.1f} days since production was trained")


def volume(cfg: RetrainSection, new_rows: int) -> Trigger:
    return Trigger("volume", new_rows >= cfg.min_new_rows, new_rows, cfg.min_new_rows,
                   f"{new_rows} new labelled rows since production's training data")


def performance(cfg: RetrainSection, task: str, registered: dict[str, Any],
                on_new: dict[str, Any]) -> Trigger:
    """Production's metrics on the new rows against its registered int8 test metrics."""
    if task == "classification":
        keys = [("accuracy", False), ("macro_f1", False)]
    else:
        keys = [("mae", True)]
    worst: tuple[float, str] = (float("-inf"), "")
    for key, worse_up in keys:
        if key in registered and key in on_new:
            r = _ratio(float(on_new[key]), float(registered[key]), worse_up)
            worst = max(worst, (r, f"{key} {registered[key]:.4g} -> {on_new[key]:.4g}"))
        tail_r, tail_n = registered.get("long_tail", {}), on_new.get("long_tail", {})
        if key in tail_r and key in tail_n:
            r = _ratio(float(tail_n[key]), float(tail_r[key]), worse_up)
            worst = max(worst, (r, f"long-tail {key} {tail_r[key]:.4g} -> "
                                   f"{tail_n[key]:.4g}"))
    if worst[1] == "":
        return Trigger("performance", False, None, cfg.performance_increase,
                       "no comparable metric (no labelled new rows?)")
    return Trigger("performance", worst[0] > cfg.performance_increase, round(worst[0], 4),
                   cfg.performance_increase, f"{worst[1]} ({worst[0]:+.1%})")


def data_drift(cfg: RetrainSection, report: dict[str, Any]) -> Trigger:
    """A PSI alert on a critical feature (every feature when none is marked)."""
    if not report:
        return Trigger("data_drift", False, None, cfg.psi_alert, UNAVAILABLE)
    rows = [r for r in report.get("features", []) if r.get("psi") is not None]  # enough rows
    watched = [r for r in rows if not cfg.critical_features
               or r["feature"] in cfg.critical_features]
    alerts = [r for r in watched if float(r["psi"]) >= cfg.psi_alert]
    worst = max(watched, key=lambda r: float(r["psi"]), default=None)
    value = round(float(worst["psi"]), 4) if worst else None
    what = "critical features" if cfg.critical_features else "features"
    detail = (f"PSI alert on {', '.join(r['feature'] for r in alerts)}" if alerts else
              f"worst PSI {value} ({worst['feature']})" if worst else "no features")
    return Trigger("data_drift", bool(alerts), value, cfg.psi_alert, f"{what}: {detail}")


def prediction_drift(cfg: RetrainSection, report: dict[str, Any]) -> Trigger:
    if not report:
        return Trigger("prediction_drift", False, None, cfg.prediction_ks_p, UNAVAILABLE)
    pred = report.get("predictions") or {}
    p = pred.get("ks_p")
    if p is None:
        return Trigger("prediction_drift", False, None, cfg.prediction_ks_p,
                       "no reference predictions in production's drift profile")
    return Trigger("prediction_drift", float(p) < cfg.prediction_ks_p, float(p),
                   cfg.prediction_ks_p,
                   f"KS statistic {float(pred.get('ks_stat', 0.0)):.3f}, p = {float(p):.3g}")


def manual(force: bool) -> Trigger:
    return Trigger("manual", force, "--force" if force else None, None,
                   "retraining forced" if force else "not forced")
