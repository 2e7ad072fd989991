"""Prometheus metrics for node_exporter's textfile collector.

Why a textfile and not an HTTP endpoint: tinyship runs as short jobs (a cron'd `tinyship
monitor`, the retrain job), not a daemon; node_exporter serves whatever `*.prom` files sit
in its `--collector.textfile.directory`. The file is replaced atomically (temp file +
rename, as node_exporter's docs require), so a scrape never reads half of it. Each call
builds its own `CollectorRegistry`: nothing leaks into prometheus_client's global one.

Metrics (every input of `build_registry` is optional; a metric whose input is absent is
not exported, so an alert on it stays silent rather than firing on a made-up zero):

    tinyship_model_info{version,alias,sha256}      1 per registry alias (production,
                                                   last_known_good, ...)
    tinyship_prediction_mae{slice,window}          regression, target units
    tinyship_prediction_rmse{slice,window}         regression, target units
    tinyship_prediction_accuracy{slice,window}     classification, 0..1
    tinyship_prediction_macro_f1{slice,window}     classification, 0..1
    tinyship_low_confidence_ratio{slice,window}    flagged / predictions in the slice
    tinyship_predictions_total{slice}              predictions in the log (counter)
    tinyship_predictions_labelled_total{slice}     of which with ground truth (counter)
    tinyship_feature_psi{feature}                  PSI against the training profile
    tinyship_feature_ks_statistic{feature}         two-sample KS statistic
    tinyship_prediction_ks_statistic               KS statistic of the predictions
    tinyship_hil_latency_seconds{quantile}         device inference latency on the HIL rig
                                                   (quantile 0.5, 0.95, 0.99; 1 = max)
    tinyship_last_retrain_timestamp_seconds        when the retrain job last finished
    tinyship_last_retrain_outcome{outcome}         1 for that run's outcome, 0 for the others
    tinyship_deployments_total{result}             deployment-log attempts per final result
                                                   (counter; in-progress attempts excluded)

Labels: `slice` is `all`, `long_tail`, `low_confidence`, `model_version:<v>` and, for
fleets up to `max_device_slices` boards, `device:<id>` (more would be one series per board,
which Prometheus should not hold); `window` is `all` (the whole log), the report's trailing
window (`7d`) or `test` (the version's registered int8 test metrics: the baseline the
alert rules compare production with).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from tinyship.atomic import write_bytes_atomic
from tinyship.monitor.production import HEADLINE, ProductionReport, SliceMetrics

if TYPE_CHECKING:
    from tinyship.deploy.log import Attempt
    from tinyship.registry import Registry

PREFIX = "tinyship_"
#: The retrain job's outcomes (`tinyship.retrain.job.OUTCOMES`: monitor sits below retrain
#: and cannot import it; a test keeps the two in step). Another value is exported as given.
RETRAIN_OUTCOMES = ("nothing_due", "not_better", "deployed", "deployed_with_failures",
                    "awaiting_approval", "refused")
#: HIL report latency keys -> the `quantile` label.
HIL_QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99", "max": "1"}
MAX_DEVICE_SLICES = 20
#: Readable by node_exporter's user (mkstemp's default is 0600, owner only).
TEXTFILE_MODE = 0o644


class _Snapshot(Collector):
    """A collector returning metric families computed once: the file describes one
    moment (the log as read now), not live process state."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))


def _model_families(models: Registry) -> list[Metric]:
    from tinyship.errors import RegistryError

    info = InfoMetricFamily(PREFIX + "model", "Registry version behind each alias.",
                            labels=["alias"])
    for alias, version in sorted(models.aliases().items()):
        try:
            sha = str((models.manifest(version).get("model") or {}).get("sha256", ""))
        except RegistryError:  # a damaged version must not stop the other metrics
            sha = ""
        info.add_metric([alias], {"version": version, "sha256": sha})
    return [info]


def _slice_allowed(s: SliceMetrics, devices: int, max_devices: int) -> bool:
    return not s.name.startswith("device:") or devices <= max_devices


def _report_families(report: ProductionReport, max_devices: int) -> list[Metric]:
    devices = sum(s.name.startswith("device:") for s in report.slices)
    keep = [s for s in report.slices if _slice_allowed(s, devices, max_devices)]
    errors = {k: _gauge(f"prediction_{k}", f"Production {k} per slice and window "
                        "(window=test: the version's registered int8 test value).",
                        ["slice", "window"]) for k in HEADLINE[report.task]}
    low = _gauge("low_confidence_ratio", "Share of predictions flagged low-confidence.",
                 ["slice", "window"])
    total = CounterMetricFamily(PREFIX + "predictions", "Predictions in the log.",
                                labels=["slice"])
    labelled = CounterMetricFamily(PREFIX + "predictions_labelled",
                                   "Predictions in the log with ground truth.",
                                   labels=["slice"])
    windows: list[tuple[str, list[SliceMetrics]]] = [("all", keep)]
    if report.window:
        windows.append((report.window, [s for s in report.recent
                                        if _slice_allowed(s, devices, max_devices)]))
    for window, slices in windows:
        for s in slices:
            for k, v in s.metrics.items():
                errors[k].add_metric([s.name, window], v)
            ratio = s.low_confidence_ratio
            if ratio is not None:
                low.add_metric([s.name, window], ratio)
    for name, metrics in report.registered.items():
        for k, v in metrics.items():
            errors[k].add_metric([name, "test"], v)
    for s in keep:
        total.add_metric([s.name], s.rows)
        labelled.add_metric([s.name], s.labelled)
    return [*errors.values(), low, total, labelled]


def _drift_families(drift: Mapping[str, Any]) -> list[Metric]:
    """From a drift report dict: `features` rows with `feature`, `psi`, `ks_stat` (the
    `DriftReport.to_dict()` shape), and `predictions: {ks_stat}` when present."""
    psi = _gauge("feature_psi", "Population stability index of a feature against the "
                 "training profile's quantile bins.", ["feature"])
    ks = _gauge("feature_ks_statistic", "Two-sample Kolmogorov-Smirnov statistic of a "
                "feature against the training data.", ["feature"])
    for row in drift.get("features") or []:
        if row.get("psi") is not None:
            psi.add_metric([str(row["feature"])], float(row["psi"]))
        if row.get("ks_stat") is not None:
            ks.add_metric([str(row["feature"])], float(row["ks_stat"]))
    out: list[Metric] = [psi, ks]
    pred = drift.get("predictions") or {}
    if pred.get("ks_stat") is not None:
        pks = _gauge("prediction_ks_statistic", "Two-sample Kolmogorov-Smirnov statistic of "
                     "the predictions against the training predictions.")
        pks.add_metric([], float(pred["ks_stat"]))
        out.append(pks)
    return out


def _hil_families(hil: Mapping[str, Any]) -> list[Metric]:
    """From a HIL report dict (`tinyship hil --json`, `Report.to_dict()`) or its
    `latency_us` part: device-reported microseconds, exported in seconds."""
    nested = hil.get("latency_us")
    lat = nested if isinstance(nested, Mapping) else hil
    g = _gauge("hil_latency_seconds", "Device inference latency on the HIL rig.",
               ["quantile"])
    for key, q in HIL_QUANTILES.items():
        if isinstance(lat.get(key), int | float):
            g.add_metric([q], float(lat[key]) / 1e6)
    return [g]


def _retrain_families(when: dt.datetime | float | None, outcome: str | None) -> list[Metric]:
    out: list[Metric] = []
    if when is not None:
        ts = _gauge("last_retrain_timestamp_seconds", "Unix time the retrain job last "
                    "finished.")
        ts.add_metric([], when.timestamp() if isinstance(when, dt.datetime) else float(when))
        out.append(ts)
    if outcome is not None:
        g = _gauge("last_retrain_outcome", "Outcome of the last retrain run (1 = this one).",
                   ["outcome"])
        for o in dict.fromkeys((*RETRAIN_OUTCOMES, outcome)):
            g.add_metric([o], 1.0 if o == outcome else 0.0)
        out.append(g)
    return out


def _deployment_families(attempts: Iterable[Attempt]) -> list[Metric]:
    from tinyship.deploy.log import RESULTS

    counts = Counter(a.result for a in attempts if not a.in_progress)
    c = CounterMetricFamily(PREFIX + "deployments", "Flash and rollback attempts in the "
                            "deployment log per final result.", labels=["result"])
    for result in dict.fromkeys((*RESULTS, *counts)):  # every result, 0 included: rate() works
        c.add_metric([result], counts.get(result, 0))
    return [c]


def build_registry(
    report: ProductionReport | None = None,
    *,
    models: Registry | None = None,
    drift: Mapping[str, Any] | None = None,
    hil: Mapping[str, Any] | None = None,
    last_retrain_time: dt.datetime | float | None = None,
    last_retrain_outcome: str | None = None,
    deployments: Iterable[Attempt] | None = None,
    max_device_slices: int = MAX_DEVICE_SLICES,
) -> CollectorRegistry:
    """A fresh CollectorRegistry holding the metrics of the inputs given (see the module
    doc): a production report, the model registry (aliases), a drift report dict, a HIL
    report dict, the last retrain run, and deployment-log attempts
    (`DeploymentLog(path).list_attempts()`)."""
    families: list[Metric] = []
    if models is not None:
        families += _model_families(models)
    if report is not None:
        families += _report_families(report, max_device_slices)
    if drift is not None:
        families += _drift_families(drift)
    if hil is not None:
        families += _hil_families(hil)
    families += _retrain_families(last_retrain_time, last_retrain_outcome)
    if deployments is not None:
        families += _deployment_families(deployments)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot([f for f in families if f.samples]))
    return registry


def render(registry: CollectorRegistry) -> str:
    """The registry in Prometheus' text exposition format (what node_exporter reads)."""
    return generate_latest(registry).decode("utf-8")


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Replace `path` with the registry's text format atomically, readable by node_exporter
    (mode 0644). node_exporter only reads `*.prom`; the temp file is hidden and ends in
    `.tmp`, so it is never scraped half-written; on failure the old file stays."""
    from tinyship.errors import TinyshipError

    try:
        write_bytes_atomic(Path(path), generate_latest(registry), mode=TEXTFILE_MODE)
    except OSError as e:
        raise TinyshipError(f"cannot write metrics file {path}: {e.strerror or e}",
                            hint="the folder must exist or be creatable and writable by this "
                            "user (node_exporter only needs to read it)") from None
