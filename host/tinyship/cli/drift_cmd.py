"""`tinyship drift`: data and prediction drift of a CSV against a version's training data.

A report, so it exits 0 whatever it finds; `--fail-on alert|warning` makes a script's run
exit 9 (`ValidationFailed`) when a watched feature reaches that band.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tinyship.cli._common import (
    echo_json,
    error_json,
    json_option,
    project_context,
    registry_options,
)

if TYPE_CHECKING:
    from tinyship.config import Config
    from tinyship.monitor.drift import DriftReport
    from tinyship.registry import Registry


@click.command()
@click.option("--reference", default=None, metavar="VERSION",
              help="Registry version or alias whose training data is the reference "
              "[default: production, else latest].")
@click.option("--current", "current_path", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="CSV of recent inputs with the version's feature columns (others are "
              "ignored).")
@click.option("--critical", default=None, metavar="F1,F2",
              help="Features marked critical: flagged in the report, and the only ones "
              "--fail-on watches [default: the config's retrain.critical_features].")
@click.option("--predictions-column", "predictions_column", default=None, metavar="COLUMN",
              help="Column of the CSV with the model's predictions: adds prediction drift "
              "(KS and PSI against the training predictions).")
@click.option("--png", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write a PSI bar chart (needs matplotlib).")
@click.option("--fail-on", "fail_on", type=click.Choice(["alert", "warning"]), default=None,
              help="Exit 9 when a watched feature (the critical ones, else every one) "
              "reaches this band.")
@registry_options
@json_option
def drift(reference: str | None, current_path: Path, critical: str | None,
          predictions_column: str | None, png: Path | None, fail_on: str | None,
          config_path: Path | None, registry_dir: Path | None, as_json: bool) -> None:
    """Drift of a CSV against a registry version's training data: per-feature PSI on the
    training quantile bins (< 0.10 ok, < 0.25 warning, else alert; thresholds from the
    config's retrain.psi_warning / psi_alert) and two-sample KS, most severe first.
    Exit 0 even with alerts, unless --fail-on is met (9)."""
    from tinyship.config import project_config
    from tinyship.errors import ValidationFailed
    from tinyship.monitor.drift import drift_report, read_current_csv

    cfg = project_config(config_path)
    reg, _ = project_context(config_path, registry_dir)
    version, profile = _load_profile(reg, reference)
    features = [str(f) for f in profile["feature_names"]]
    marked, warn, alert = _settings(cfg, critical, features, version)
    columns = [*features, *([predictions_column] if predictions_column else [])]
    frame = read_current_csv(current_path, list(dict.fromkeys(columns)))
    report = drift_report(
        profile, frame, feature_names=features, critical=marked, warn=warn, alert=alert,
        current_predictions=frame[predictions_column] if predictions_column else None)
    if png is not None:
        report.write_png(png)
    doc = {"reference": version, "current": str(current_path), "png": str(png) if png else None,
           "fail_on": fail_on, **report.to_dict()}
    failure = _failure(report, fail_on)
    error = ValidationFailed(failure) if failure else None
    if as_json:
        echo_json({**error_json(error), **doc} if error else {"ok": True, **doc})
    else:
        _print_report(report, version, current_path, png)
    if error:
        raise error


def _load_profile(reg: Registry, ref: str | None) -> tuple[str, dict[str, Any]]:
    """A version's drift profile, hash-checked; RegistryError when it has none (trained
    before profiles were stored) or it is unusable."""
    import json

    from tinyship.data.profile import PROFILE_FILE, validate_profile
    from tinyship.errors import RegistryError
    from tinyship.registry import DAMAGED_HINT

    version = reg.resolve(ref)
    if PROFILE_FILE not in reg.artifacts(version):
        raise RegistryError(
            f"{version} has no {PROFILE_FILE}: it was trained before drift profiles were "
            "stored", hint="retrain (`tinyship train`) to register a version with one, or "
            "pass a newer --reference")
    raw = reg.read_artifact(version, PROFILE_FILE)
    try:
        profile = json.loads(raw)
        validate_profile(profile)
    except ValueError as e:  # bad JSON, not UTF-8, or not a profile this tinyship reads
        raise RegistryError(f"{version}/{PROFILE_FILE} is unusable: {e}",
                            hint=DAMAGED_HINT) from None
    assert isinstance(profile, dict)
    return version, profile


def _settings(cfg: Config | None, critical: str | None, features: list[str], version: str
              ) -> tuple[list[str], float, float]:
    """Critical features (--critical, else the config's) checked against the version's
    features, and the PSI bands (the config's, else the defaults)."""
    from tinyship.errors import ConfigError
    from tinyship.monitor.drift import DEFAULT_ALERT, DEFAULT_WARN

    known = ", ".join(features)
    if critical is not None:
        marked = [c.strip() for c in critical.split(",") if c.strip()]
        unknown = [c for c in marked if c not in features]
        if unknown:
            raise click.BadParameter(f"not a feature of {version}: {', '.join(unknown)} "
                                     f"(its features: {known})", param_hint="--critical")
    else:
        marked = list(cfg.retrain.critical_features) if cfg is not None else []
        unknown = [c for c in marked if c not in features]
        if unknown:
            raise ConfigError(f"retrain.critical_features names {', '.join(unknown)}, not a "
                              f"feature of {version} (its features: {known})",
                              hint="fix the config, or pass --critical for this version")
    if cfg is None:
        return marked, DEFAULT_WARN, DEFAULT_ALERT
    warn, alert = cfg.retrain.psi_warning, cfg.retrain.psi_alert
    if warn > alert:
        raise ConfigError(f"retrain.psi_warning ({warn}) is above retrain.psi_alert ({alert})")
    return marked, warn, alert


def _failure(report: DriftReport, fail_on: str | None) -> str | None:
    """The --fail-on message when its band is reached by a watched feature: the critical
    ones when some are marked, else every one (as the retrain job's drift trigger)."""
    if fail_on is None:
        return None
    watched = [r for r in report.features if r.critical] or report.features
    bands = ("alert",) if fail_on == "alert" else ("alert", "warning")
    hit = [r for r in watched if r.band in bands]
    if not hit:
        return None
    which = "critical feature" if any(r.critical for r in watched) else "feature"
    listed = ", ".join(f"{r.feature} ({r.psi:.3f})" for r in hit)
    return f"drift at or above {fail_on} (--fail-on) on {which}(s): {listed}"


def _print_report(report: DriftReport, version: str, current: Path, png: Path | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    colours = {"alert": "red", "warning": "yellow", "ok": "green", "insufficient": "dim"}
    console = Console()
    rows = [*report.features, *([report.predictions] if report.predictions else [])]
    missing = any(r.n_missing for r in rows)
    t = Table(title=f"drift of {escape(str(current))} ({report.rows:,} rows) against "
              f"{version} ({report.reference_rows:,} training rows)", show_edge=False)
    t.add_column("feature", no_wrap=True)
    t.add_column("band")
    for col in ("PSI", "KS", "KS p", "rows", *(["missing"] if missing else []), "empty bins",
                "mean: train -> now"):
        t.add_column(col, justify="right")

    def num(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for r in rows:
        name = escape(r.feature) + (" *" if r.critical else "")
        if r is report.predictions:
            name = "[italic]predictions[/]"
        t.add_row(name, f"[{colours[r.band]}]{r.band}[/]", num(r.psi, ".3f"),
                  num(r.ks_stat, ".3f"), num(r.ks_p, ".3g"), f"{r.n_current:,}",
                  *([f"{r.n_missing:,}"] if missing else []), num(r.empty_bins, "d"),
                  f"{r.reference_mean:.4g} -> {num(r.current_mean, '.4g')}")
    console.print(t)
    summary = [f"{len(report.alerts)} alert(s)", f"{len(report.warnings)} warning(s)"]
    if any(r.critical for r in report.features):
        summary.insert(1, f"{len(report.critical_alerts)} on critical features (*)")
    console.print(f"PSI bands: < {report.warn:g} ok, < {report.alert:g} warning, else alert; "
                  + ", ".join(summary))
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    if png is not None:
        console.print(f"chart: {escape(str(png))}")
