"""Optional experiment tracking: mirror each training run into MLflow.

Configured by `[project] mlflow_tracking_uri` (and `mlflow_experiment`, default the
project name). Unset, MLflow is never imported: importing it costs over a second and
~1,800 modules, which `tinyship train` without tracking should not pay.

The registry is the source of truth: a version exists once `register_stage` has written
it, and MLflow only mirrors it for people who compare runs in the MLflow UI. So a tracking
failure (MLflow missing, a bad URI, an unwritable or locked store, a server down) is a
warning, never an error: failing the command would lose nothing from the registry but
would tell a scheduled job that training failed when it did not.

Local stores work offline: `file:` (MLflow's file store, which recent MLflow (3.17) refuses
unless `MLFLOW_ALLOW_FILE_STORE` is set; tinyship sets it while logging to a `file:`
URI the config names) and `sqlite:` (needs SQLAlchemy and Alembic, in the extra).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tinyship.config import Config
    from tinyship.pipeline import PipelineResult

log = logging.getLogger(__name__)

#: Config sections logged as parameters ("model.hidden", "training.seed", ...).
PARAM_SECTIONS = ("model", "training", "quantization")
#: Registry files mirrored as run artifacts when the version folder is given.
ARTIFACTS = ("manifest.json", "MODEL_CARD.md", "model_int8.tflite")
#: Artifacts of a `sqlite:` store's experiments go beside the database (the name
#: `mlflow server` uses), not into `./mlruns` of whatever folder the job ran in.
SQLITE_ARTIFACT_DIR = "mlartifacts"
_SQLITE = "sqlite:///"


def tracking_uri(cfg: Config) -> str | None:
    """The configured tracking URI with a local path made absolute against the config
    file's folder (as every path in the config is), or None when tracking is off."""
    uri = getattr(cfg.project, "mlflow_tracking_uri", None)
    if not uri:
        return None
    return resolve_uri(str(uri), Path(cfg.base_dir))


def resolve_uri(uri: str, base_dir: Path) -> str:
    """`file:mlruns`, `mlruns` and `sqlite:///mlflow.db` relative to `base_dir`; absolute
    paths, servers (`http(s)://`) and other databases unchanged."""
    if uri.startswith(_SQLITE):
        path, sep, query = uri[len(_SQLITE):].partition("?")
        if not path or path == ":memory:":
            return uri
        return _SQLITE + _absolute(path, base_dir).as_posix() + sep + query
    parts = urlsplit(uri)
    if parts.scheme == "file" and not parts.netloc:
        return _absolute(parts.path, base_dir).as_uri()
    if len(parts.scheme) <= 1:  # a plain path (or a Windows drive letter)
        return _absolute(uri, base_dir).as_uri()
    return uri


def _absolute(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() else base_dir / p).resolve()


def _local_path(uri: str) -> tuple[str, Path] | None:
    """("file" | "sqlite", local path) of a local store, None for anything else."""
    if uri.startswith(_SQLITE):
        path = uri[len(_SQLITE):].partition("?")[0]
        return ("sqlite", Path(path)) if path and path != ":memory:" else None
    parts = urlsplit(uri)
    if parts.scheme == "file" and not parts.netloc:
        return "file", Path(parts.path)
    return None


def log_training(
    cfg: Config,
    result: PipelineResult,
    *,
    version: str | None,
    version_dir: Path | None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> str | None:
    """Log one training run (params, metrics, tags and, with `version_dir`, the version's
    manifest, model card and int8 model) to MLflow; returns the run id.

    Returns None at once, without importing MLflow, when no tracking URI is configured;
    returns None with a warning when MLflow fails (see the module docstring for why).
    """
    uri = tracking_uri(cfg)
    if uri is None:
        return None
    version = version if version is not None else result.version
    experiment = getattr(cfg.project, "mlflow_experiment", None) or cfg.project.name
    run_id: str | None = None
    client: Any = None
    try:
        manifest = _read_manifest(version_dir)
        params = training_params(cfg, result, manifest)
        metrics = training_metrics(result)
        run_tags = training_tags(cfg, result, manifest, version, tags)
        artifacts = ([version_dir / name for name in ARTIFACTS
                      if (version_dir / name).is_file()] if version_dir is not None else [])
        with _mlflow_env(uri):
            mlflow_client: Any = importlib.import_module("mlflow.tracking")
            entities: Any = importlib.import_module("mlflow.entities")
            client = mlflow_client.MlflowClient(tracking_uri=uri)
            exp_id = _experiment_id(client, experiment, uri)
            run = client.create_run(exp_id, run_name=run_name or version, tags=run_tags)
            run_id = str(run.info.run_id)
            now = int(time.time() * 1000)
            client.log_batch(
                run_id,
                metrics=[entities.Metric(k, v, now, 0) for k, v in metrics.items()],
                params=[entities.Param(k, v) for k, v in params.items()],
            )
            for path in artifacts:
                client.log_artifact(run_id, str(path))
            client.set_terminated(run_id, "FINISHED")
    except Exception as e:  # any failure of the mirror is only a warning
        if client is not None and run_id is not None:
            with contextlib.suppress(Exception), _mlflow_env(uri):
                client.set_terminated(run_id, "FAILED")
        hint = (" (install it: pip install 'tinyship[tracking]')"
                if isinstance(e, ImportError) else "")
        log.warning("MLflow tracking to %s failed, the run is not mirrored (the registry "
                    "version is unaffected): %s: %s%s", uri, type(e).__name__, e, hint)
        return None
    return run_id


@contextlib.contextmanager
def _mlflow_env(uri: str) -> Iterator[None]:
    """While logging: allow MLflow's file store when the config names one (recent MLflow
    refuses it otherwise; an explicit MLFLOW_ALLOW_FILE_STORE wins), and hide the
    deprecation warnings MLflow's own dependencies raise, which a user cannot act on."""
    local = _local_path(uri)
    key = "MLFLOW_ALLOW_FILE_STORE"
    set_env = local is not None and local[0] == "file" and key not in os.environ
    if local is not None:
        # The store's folder, relative to the config like every path (SQLite makes none).
        (local[1].parent if local[0] == "sqlite" else local[1]).mkdir(parents=True,
                                                                      exist_ok=True)
    if set_env:
        os.environ[key] = "true"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        if set_env:
            os.environ.pop(key, None)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    """The experiment's id, creating it on first use (a `sqlite:` store's with its
    artifacts beside the database)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    local = _local_path(uri)
    location = ((local[1].parent / SQLITE_ARTIFACT_DIR).as_uri()
                if local is not None and local[0] == "sqlite" else None)
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:
        # Another job created it between the two calls.
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def _read_manifest(version_dir: Path | None) -> dict[str, Any]:
    if version_dir is None:
        return {}
    path = version_dir / ARTIFACTS[0]
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def training_params(cfg: Config, result: PipelineResult,
                    manifest: Mapping[str, Any]) -> dict[str, str]:
    """What the run was made from: the model, training and quantization sections (dotted
    keys, values as JSON), the data fingerprint, the task and the tinyship version."""
    from tinyship import __version__

    params: dict[str, str] = {}
    for section in PARAM_SECTIONS:
        for key, value in getattr(cfg, section).model_dump(mode="json").items():
            params[f"{section}.{key}"] = value if isinstance(value, str) else json.dumps(value)
    data = {**manifest.get("data", {}), **result.data}
    features = result.data.get("features", manifest.get("features"))
    for key in ("sha256", "rows"):
        if data.get(key) is not None:
            params[f"data.{key}"] = str(data[key])
    if features is not None:
        params["data.features"] = str(len(features))
    params["task"] = str(result.metrics.get("task") or manifest.get("task") or cfg.data.task)
    params["tinyship_version"] = str(manifest.get("tinyship_version") or __version__)
    return params


def training_metrics(result: PipelineResult) -> dict[str, float]:
    """Every finite number of the result: float and int8 metrics (long tail included),
    baseline, degradation, parity, sizes, training time; nested keys joined with "."."""
    metrics = flatten_numbers(result.metrics)
    metrics.update(flatten_numbers({
        "model_bytes": result.model_bytes,
        "arena_bytes": result.arena_bytes,
        "arena_min_bytes": result.arena_min_bytes,
        "timings_s": result.timings_s,
    }))
    return metrics


def flatten_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of a nested mapping under dotted keys; strings, lists (per-row
    parity, confusion matrices), booleans, NaN and infinities are left out, since an
    MLflow metric is one finite number."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, name + "."))
        elif isinstance(value, Real) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                out[name] = number
    return out


def training_tags(cfg: Config, result: PipelineResult, manifest: Mapping[str, Any],
                  version: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
    """Links back to the registry: version, training key, git commit (MLflow's own tag,
    shown as the run's source commit), registry folder; then the caller's `extra`."""
    from tinyship.pipeline import git_commit, training_key

    key = manifest.get("training_key")
    if key is None and result.data.get("sha256"):
        key = training_key(cfg, str(result.data["sha256"]))
    commit = manifest.get("git_commit") or git_commit(Path(cfg.base_dir))
    tags = {
        "tinyship.registry_version": version,
        "tinyship.training_key": key,
        "tinyship.registry": result.registry,
        "tinyship.passed": "true" if result.passed else "false",
        "tinyship.duplicate_of": result.duplicate_of,
        "mlflow.source.git.commit": commit,
    }
    out = {k: str(v) for k, v in tags.items() if v}
    out.update({str(k): str(v) for k, v in (extra or {}).items()})
    return out
