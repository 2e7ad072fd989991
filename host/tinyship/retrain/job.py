"""`tinyship retrain`: the periodic retrain-and-reflash job, one run.

    ingest the new data (quarantined when it fails the data checks)
    -> triggers (schedule, volume, performance, data drift, prediction drift, manual)
    -> challenger: trained through the same stages as `tinyship train`, on the new snapshot
       (or continuing production's weights with warm_start)
    -> champion vs challenger on the same held-out rows and on the recent rows: a paired
       test on per-sample losses, effect size, guards (bytes, arena, device latency),
       a scikit-learn linear baseline beside both
    -> register (lineage: parent, data snapshot, comparison) -> HIL validation on the rig
    -> promote to `production` (unless a person holds it: awaiting approval)
    -> reflash the fleet with the deploy flow (per-board verification and rollback)
    -> report (Markdown + JSON + charts), audit log, Prometheus textfile.

Every decision is appended to the audit log with the run id; the outcome is one of
`OUTCOMES`, each with its exit code (README "Retrain").
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyship.config import Config
from tinyship.errors import DataError, ExitCode, GateError, TinyshipError

#: outcome -> exit code. 0 is the job's full success; the others say where it stopped.
OUTCOMES: dict[str, ExitCode] = {
    "deployed": ExitCode.OK,                  # promoted, every fleet board verified on it
    "nothing_due": ExitCode.NOTHING_DUE,      # no trigger fired
    "not_better": ExitCode.NOT_BETTER,        # the champion stays: the challenger lost
    "deployed_with_failures": ExitCode.DEPLOYED_WITH_FAILURES,  # some boards rolled back
    "refused": ExitCode.RETRAIN_REFUSED,      # data quarantined, a gate or HIL failed
    "awaiting_approval": ExitCode.AWAITING_APPROVAL,  # production held: a person decides
}

Progress = Callable[[str], None]


@dataclass
class RetrainResult:
    run_id: str
    outcome: str
    reasons: list[str] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None
    champion: str | None = None
    challenger: str | None = None
    #: The challenger continued production's weights (`--warm-start`).
    warm_start: bool = False
    triggers: list[dict[str, Any]] = field(default_factory=list)
    drift: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    guards: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    hil: dict[str, Any] | None = None
    fleet: dict[str, Any] | None = None
    report_dir: str | None = None
    metrics_file: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return int(OUTCOMES[self.outcome])

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["exit_code"] = self.exit_code
        return d


@dataclass
class RetrainOptions:
    new_data: Path
    fleet: Path | None = None
    force: bool = False
    warm_start: bool | None = None       # None: the config's
    hil_device: str | None = None        # None: the config's
    report_dir: Path | None = None       # None: the config's
    now: dt.datetime | None = None       # tests pin the clock


def run_retrain(cfg: Config, opts: RetrainOptions, progress: Progress | None = None
                ) -> RetrainResult:
    """One run of the job; never raises for an outcome (see `OUTCOMES`), only for a bug or
    an unusable setup (config, registry)."""
    from tinyship.retrain.run import Run

    return Run(cfg, opts, progress or (lambda _msg: None)).execute()


def new_run_id(now: dt.datetime) -> str:
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def champion_predictions(registry: Any, version: str, x_raw: np.ndarray) -> np.ndarray:
    """Production's int8 model through TFLM on raw feature rows: its own standardization
    and input quantization, outputs in target units (the device's numbers)."""
    from tinyship.convert import runtimes
    from tinyship.convert.tflite_info import TensorInfo

    m = registry.manifest(version)
    std = m["standardization"]
    xs = (np.asarray(x_raw, np.float64) - np.asarray(std["mean"])) / np.asarray(std["std"])
    tin = TensorInfo(**m["model"]["input"])
    model = registry.read_artifact(version, "model_int8.tflite")
    out = runtimes.run_tflm(model, runtimes.quantize(xs, tin), int(m["model"]["arena_bytes"]))
    return runtimes.to_target_units(out, m["model"]["output"])


def is_refusal(e: TinyshipError) -> bool:
    """Errors that end a run as `refused` (the inputs or the challenger are not fit)."""
    return isinstance(e, DataError | GateError)


class RetrainStopped(TinyshipError):
    """The job ended short of "deployed"; `exit_code` names where (`OUTCOMES`)."""

    def __init__(self, result: RetrainResult) -> None:
        super().__init__(f"retrain {result.outcome.replace('_', ' ')}: "
                         + "; ".join(result.reasons))
        self.exit_code = OUTCOMES[result.outcome]
