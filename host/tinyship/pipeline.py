"""The model half of tinyship, end to end: data checks -> train -> int8 -> C array -> gates
-> registry. Nothing reaches the registry unless every check and gate passes.

One stage function per step (`prepare_data`, `train_stage`, `convert_stage`, `gate_stage`,
`register_stage`); `run_pipeline` (`tinyship train`) and the retrain job
(`tinyship.retrain`) both call them, so a challenger is made exactly as any version is.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyship import __version__
from tinyship.config import Config
from tinyship.data.profile import PROFILE_FILE as DRIFT_PROFILE
from tinyship.errors import DataError, GateError

if TYPE_CHECKING:
    from tinyship.registry import Registry

Progress = Callable[[str], None]

# Names of artifacts inside a registry version.
KERAS_FILE = "model.keras"
FLOAT_TFLITE = "model_float.tflite"
INT8_TFLITE = "model_int8.tflite"
TEST_SET = "test_set.npz"
MODEL_CARD = "MODEL_CARD.md"
FIRMWARE_DIR = "firmware"


@dataclass
class PipelineResult:
    version: str | None
    registry: str
    metrics: dict[str, Any]
    gates: list[dict[str, Any]]
    passed: bool
    model_bytes: int
    arena_bytes: int
    arena_min_bytes: int
    data: dict[str, Any]
    timings_s: dict[str, float] = field(default_factory=dict)
    #: Set when an identical run (config, data, code) is already registered as this version.
    duplicate_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "registry": self.registry,
            "passed": self.passed,
            "metrics": self.metrics,
            "gates": self.gates,
            "model_bytes": self.model_bytes,
            "arena_bytes": self.arena_bytes,
            "arena_min_bytes": self.arena_min_bytes,
            "data": self.data,
            "timings_s": self.timings_s,
            "registered": self.version is not None and self.duplicate_of is None,
            "duplicate_of": self.duplicate_of,
        }


class _Timer:
    def __init__(self, progress: Progress | None) -> None:
        self.timings: dict[str, float] = {}
        self._progress = progress

    @contextmanager
    def stage(self, name: str, message: str) -> Iterator[None]:
        if self._progress:
            self._progress(message)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - t0, 3)


def git_commit(cwd: Path) -> str | None:
    """The current git commit of `cwd`, or None outside a checkout (never fails the run)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def long_tail_mask(y: np.ndarray, y_train: np.ndarray, cfg: Config) -> tuple[np.ndarray, str]:
    """Rows of the long-tail slice and a description of it."""
    lt = cfg.data.long_tail
    if lt.range is not None:
        lo, hi = lt.range
        mask = np.ones(len(y), dtype=bool)
        if lo is not None:
            mask &= y >= lo
        if hi is not None:
            mask &= y <= hi
        return mask, f"{cfg.data.target} in [{lo}, {hi}]"
    if lt.side == "upper":
        cut = float(np.quantile(y_train, lt.quantile))
        return y >= cut, f"{cfg.data.target} >= {cut:.4g} (top {1 - lt.quantile:.0%})"
    cut = float(np.quantile(y_train, 1 - lt.quantile))
    return y <= cut, f"{cfg.data.target} <= {cut:.4g} (bottom {1 - lt.quantile:.0%})"


def task_metrics(
    task: str, y_true: np.ndarray, pred: np.ndarray, n_classes: int, tail: tuple[np.ndarray, str]
) -> dict[str, Any]:
    """Metrics for predictions `pred` (regression: values; classification: class scores)."""
    from tinyship.train.metrics import classification_metrics, regression_metrics

    if task == "classification":
        return classification_metrics(y_true, np.argmax(pred, axis=1), n_classes)
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    m: dict[str, Any] = regression_metrics(y_true, p)
    mask, desc = tail
    if mask.any():
        m["long_tail"] = {"slice": desc, "rows": int(mask.sum()), **regression_metrics(
            y_true[mask], p[mask])}
    return m


def code_fingerprint() -> str:
    """SHA-256 over tinyship's own sources and the versions of the libraries that train,
    convert and run the model: "the same code" for duplicate detection, with or without git."""
    import hashlib
    from importlib import metadata

    h = hashlib.sha256(__version__.encode())
    pkg = Path(__file__).resolve().parent
    for f in sorted(pkg.rglob("*.py")):
        h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for dist in ("tensorflow-cpu", "tensorflow", "keras", "tflite-micro", "ai-edge-litert",
                 "scikit-learn", "numpy"):
        with suppress(metadata.PackageNotFoundError):
            h.update(f"{dist}=={metadata.version(dist)}".encode())
    return h.hexdigest()


def training_key(cfg: Config, data_sha256: str) -> str:
    """Identity of a training run: config (minus the registry location and the deploy and
    retrain sections), data bytes, code."""
    import hashlib
    import json

    # Where it deploys and when it retrains do not change what training makes.
    conf = cfg.model_dump(mode="json", exclude={
        "base_dir": True, "deploy": True, "retrain": True,
        "project": {"registry", "mlflow_tracking_uri", "mlflow_experiment"}})
    blob = json.dumps({"config": conf, "data": data_sha256, "code": code_fingerprint()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def find_identical(registry: Registry, key: str) -> str | None:
    """The newest intact version trained from the same config, data and code, if any.
    Versions with an unreadable manifest or a damaged artifact are skipped (a new version is
    trained instead); `registry list` and `registry verify` report them."""
    from tinyship.errors import RegistryError

    for v in reversed(registry.versions()):
        try:
            if registry.manifest(v).get("training_key") == key and not registry.verify(v):
                return str(v)
        except RegistryError:
            continue
    return None


def _parity(
    int8_tflite: bytes, xq: np.ndarray, out_tflite: np.ndarray, out_tflm: np.ndarray,
    classification: bool,
) -> dict[str, Any]:
    """TFLite vs TFLM on the test rows. Judged operator by operator on identical inputs
    (`runtimes.layer_parity`): end to end, one layer's 1-LSB rounding tie grows through
    later layers and a softmax (10 LSB near p = 0.5), which is not a runtime mismatch.
    The end-to-end difference is reported beside it, with the rows that differ."""
    from tinyship.convert import runtimes

    layers = runtimes.layer_parity(int8_tflite, xq)
    worst = max(layers, key=lambda r: r["max_lsb"], default=None)
    out_d = np.abs(out_tflite.astype(np.int32) - out_tflm.astype(np.int32)).max(axis=1)
    rec: dict[str, Any] = {
        "max_lsb": int(worst["max_lsb"]) if worst else 0,
        "worst_op": f"{worst['op']} (operator {worst['index']})" if worst else None,
        "rows": sorted({r for layer in layers for r in layer["rows"]}),
        "layers": layers,
        "output_max_lsb": int(out_d.max()) if len(out_d) else 0,
        "output_rows": np.flatnonzero(out_d).tolist(),
    }
    if classification:
        rec["top1_changed_rows"] = np.flatnonzero(
            out_tflite.argmax(axis=1) != out_tflm.argmax(axis=1)).tolist()
    return rec


def _parity_detail(p: dict[str, Any], n: int) -> str:
    def rows(r: list[int]) -> str:
        return ", ".join(map(str, r[:8])) + (", ..." if len(r) > 8 else "")

    text = f"max |TFLite - TFLM| of any one operator on identical inputs, {n} test rows"
    if p["max_lsb"]:
        text += f" (worst: {p['worst_op']})"
    text += f"; end to end {p['output_max_lsb']} LSB"
    if p["output_rows"]:
        text += f" on test rows {rows(p['output_rows'])}"
        if p.get("top1_changed_rows"):
            text += f", top-1 class changes on rows {rows(p['top1_changed_rows'])}"
    return text


def _duplicate_result(
    registry: Registry, version: str, data_info: dict[str, Any], timings: dict[str, float]
) -> PipelineResult:
    """The result of a run that found its twin already registered: that version's record."""
    m = registry.manifest(version)
    model = m.get("model", {})
    return PipelineResult(
        version=version, registry=str(registry.root), metrics=m.get("metrics", {}),
        gates=m.get("gates", []), passed=True, model_bytes=int(model.get("bytes", 0)),
        arena_bytes=int(model.get("arena_bytes", 0)),
        arena_min_bytes=int(model.get("arena_min_bytes", 0)), data=data_info,
        timings_s=timings, duplicate_of=version,
    )


@dataclass
class Prepared:
    """The checked data, its split and standardization: what training and the retrain job's
    comparison both use."""

    path: Path
    task: str
    features: list[str]
    dropped: list[str]
    data_info: dict[str, Any]
    key: str
    x_all: np.ndarray          # raw features, every row
    y_all: np.ndarray
    classes: list[str]
    splits: Any                # tinyship.train.split.Splits
    scaler: Any                # tinyship.train.split.Standardizer
    xs: np.ndarray             # standardized features, every row
    tail: tuple[np.ndarray, str]
    metrics_baseline: dict[str, Any]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(standardized x, y) of the `train`, `val` or `test` split."""
        idx = getattr(self.splits, name)
        return self.xs[idx], self.y_all[idx]


@dataclass
class Trained:
    result: Any                # tinyship.train.model.TrainResult
    metrics_float: dict[str, Any]


@dataclass
class Converted:
    """The int8 model and what it was measured to do on the test rows."""

    float_tflite: bytes
    int8_tflite: bytes
    info: Any                  # tinyship.convert.tflite_info.ModelInfo
    profile_problems: list[str]
    output_record: dict[str, Any]
    arena_min: int
    arena: int
    xq: np.ndarray             # the test rows, quantized
    out_tflm: np.ndarray       # TFLM's int8 outputs on them
    predictions: np.ndarray    # in target units (regression) or class scores
    parity: dict[str, Any]
    metrics_int8: dict[str, Any]
    degradation: float


def prepare_data(cfg: Config, path: Path, timer: _Timer | None = None, *,
                 registry: Registry | None = None, force: bool = True
                 ) -> Prepared | PipelineResult:
    """Load and check the data, split and standardize it. With a `registry` and not
    `force`, a run identical to a registered version returns that version's result."""
    from tinyship.data.checks import model_features, run_checks
    from tinyship.data.load import fingerprint, load_dataset
    from tinyship.train.metrics import baseline_metrics
    from tinyship.train.split import Standardizer, split_indices

    timer = timer or _Timer(None)
    task = cfg.data.task
    with timer.stage("data", f"checking data {path}"):
        df = load_dataset(path, cfg.data)
        report = run_checks(df, cfg.data)
        report.raise_for_failures()
        features, dropped = model_features(df, cfg.data)
        data_info = {"path": str(path), **fingerprint(path), "checks": len(report.results)}
        key = training_key(cfg, str(data_info["sha256"]))
        existing = None if force or registry is None else find_identical(registry, key)
        if existing is not None:
            assert registry is not None
            return _duplicate_result(registry, existing, data_info, timer.timings)
        x_all = df[features].to_numpy(dtype=np.float64)
        classes: list[str] = []
        if task == "classification":
            labels = df[cfg.data.target].astype(str).to_numpy()
            classes = sorted(set(labels))
            y_all = np.searchsorted(np.array(classes), labels).astype(np.int64)
        else:
            y_all = df[cfg.data.target].to_numpy(dtype=np.float64)

    try:
        splits = split_indices(
            len(df),
            test_fraction=cfg.training.test_fraction,
            val_fraction=cfg.training.val_fraction,
            seed=cfg.training.seed,
            stratify=y_all if task == "classification" else None,
            groups=df[cfg.data.group].to_numpy() if cfg.data.group else None,
        )
    except ValueError as e:
        raise DataError(
            f"{path}: {e}",
            hint="lower training.test_fraction / training.val_fraction, or add rows"
            + (" (or groups: data.group)" if cfg.data.group else ""),
        ) from None
    scaler = Standardizer.fit(x_all[splits.train])
    xs = scaler.transform(x_all)
    y_tr, y_te = y_all[splits.train], y_all[splits.test]
    tail = long_tail_mask(y_te, y_tr, cfg) if task == "regression" else (
        np.zeros(len(y_te), bool), "")
    return Prepared(path, task, features, dropped, data_info, key, x_all, y_all, classes,
                    splits, scaler, xs, tail, baseline_metrics(task, y_tr, y_te, len(classes)))


def train_stage(cfg: Config, prep: Prepared, timer: _Timer | None = None, *,
                warm_start: Any = None) -> Trained:
    """Train on the train split (early stopping on val); `warm_start`: a Keras model whose
    weights training continues from instead of a fresh initialization."""
    from tinyship.train import model as train_model

    timer = timer or _Timer(None)
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (prep.part(n) for n in ("train", "val",
                                                                         "test"))
    how = "continuing the champion" if warm_start is not None else "training"
    with timer.stage("train", f"{how} {cfg.model.type} on {len(x_tr)} rows"):
        trained = train_model.fit(
            x_tr, y_tr, x_va, y_va, task=prep.task, n_classes=prep.n_classes,
            spec=cfg.model, training=cfg.training, initial_model=warm_start,
        )
        float_pred = trained.to_target_units(train_model.predict(trained.model, x_te))
        metrics_float = task_metrics(prep.task, y_te, float_pred, prep.n_classes, prep.tail)
    return Trained(trained, metrics_float)


def convert_stage(cfg: Config, prep: Prepared, tr: Trained, timer: _Timer | None = None
                  ) -> Converted:
    """int8 conversion, arena sizing, and the int8 model run in TFLite and TFLM."""
    from tinyship.convert import arith, quantize, runtimes, tflite_info
    from tinyship.train.metrics import relative_degradation

    timer = timer or _Timer(None)
    rng = np.random.default_rng(cfg.training.seed)
    x_tr, _ = prep.part("train")
    x_te, y_te = prep.part("test")
    trained = tr.result
    with timer.stage("convert", f"quantizing to int8 for profile {cfg.quantization.profile}"):
        export_model = trained.model
        float_tflite = quantize.to_float_tflite(export_model)
        n_rep = min(cfg.quantization.representative_samples, len(x_tr))
        rep_idx = rng.choice(len(x_tr), size=n_rep, replace=False)
        int8_tflite = quantize.to_int8_tflite(
            export_model, x_tr[np.sort(rep_idx)], cfg.quantization.profile
        )
        int8_tflite = arith.harmonize_scales(int8_tflite)  # same multipliers on every runtime
        info = tflite_info.inspect_model(int8_tflite)
        profile_problems = tflite_info.check_profile(info, cfg.quantization.profile)
        tin, tout = info.inputs[0], info.outputs[0]
        output_record = {**tout.to_dict(), "target_mean": trained.target_mean,
                         "target_scale": trained.target_scale}

    with timer.stage("arena", "sizing the TFLM tensor arena"):
        arena_min = runtimes.find_min_arena(int8_tflite)
        arena = runtimes.device_arena_bytes(arena_min)

    with timer.stage("evaluate", f"running int8 model in TFLite and TFLM on {len(x_te)} rows"):
        xq = runtimes.quantize(x_te, tin)
        out_tflite = runtimes.run_tflite(int8_tflite, xq)
        out_tflm = runtimes.run_tflm(int8_tflite, xq, arena)
        parity = _parity(int8_tflite, xq, out_tflite, out_tflm, prep.task == "classification")
        deq = runtimes.to_target_units(out_tflm, output_record)
        metrics_int8 = task_metrics(prep.task, y_te, deq, prep.n_classes, prep.tail)
        degradation = relative_degradation(prep.task, tr.metrics_float, metrics_int8)
    return Converted(float_tflite, int8_tflite, info, profile_problems, output_record,
                     arena_min, arena, xq, out_tflm, deq, parity, metrics_int8, degradation)


def gate_stage(cfg: Config, registry: Registry, prep: Prepared, tr: Trained, conv: Converted,
               timer: _Timer | None = None) -> PipelineResult:
    """The quality gates; GateError (with the whole result) when any fails."""
    from tinyship.gates import GATE_HINTS, GateInputs, evaluate

    timer = timer or _Timer(None)
    task = prep.task
    _, y_te = prep.part("test")
    trained, deq = tr.result, conv.predictions
    regression = task == "regression"
    output_step = conv.info.outputs[0].scale * trained.target_scale if regression else None
    gate_results = evaluate(
        cfg,
        GateInputs(
            task=task,
            metrics_int8=conv.metrics_int8,
            metrics_float=tr.metrics_float,
            metrics_baseline=prep.metrics_baseline,
            degradation=round(conv.degradation, 6),
            parity_lsb=int(conv.parity["max_lsb"]),
            parity_detail=_parity_detail(conv.parity, len(y_te)),
            pred_min=float(deq.min()) if regression else None,
            pred_max=float(deq.max()) if regression else None,
            output_step=output_step,
            model_bytes=len(conv.int8_tflite),
            arena_bytes=conv.arena,
            train_seconds=trained.seconds,
            profile_problems=conv.profile_problems,
        ),
    )
    gates = [g.to_dict() for g in gate_results]
    metrics = {
        "task": task,
        "test_rows": len(y_te),
        "float": tr.metrics_float,
        "int8": conv.metrics_int8,
        "baseline": prep.metrics_baseline,
        "int8_degradation": conv.degradation,
        "parity_max_lsb": conv.parity["max_lsb"],
        "parity_mismatched_rows": len(conv.parity["rows"]),
        "parity": conv.parity,
        "epochs": trained.epochs_run,
        "train_seconds": round(trained.seconds, 3),
    }
    if output_step is not None:
        metrics["output_step"] = output_step
    result = PipelineResult(
        version=None,
        registry=str(registry.root),
        metrics=metrics,
        gates=gates,
        passed=all(g.passed for g in gate_results),
        model_bytes=len(conv.int8_tflite),
        arena_bytes=conv.arena,
        arena_min_bytes=conv.arena_min,
        data={**prep.data_info, "features": prep.features, "dropped_features": prep.dropped},
        timings_s=timer.timings,
    )
    if not result.passed:
        failed = [g for g in gate_results if not g.passed]
        lines = [f"{g.name}: {g.value} (must be {g.op} {g.threshold})"
                 + (f"\n    {g.detail}" if g.detail else "") for g in failed]
        hints = [GATE_HINTS[g.name] for g in failed if g.name in GATE_HINTS]
        raise GateError(
            f"{len(failed)} quality gate(s) failed; nothing was registered:\n  "
            + "\n  ".join(lines),
            result=result.to_dict(),
            hint="; ".join(hints) or None,
        )
    return result


def register_stage(cfg: Config, registry: Registry, prep: Prepared, tr: Trained,
                   conv: Converted, result: PipelineResult, timer: _Timer | None = None, *,
                   lineage: dict[str, Any] | None = None) -> str:
    """Write the version (model files, C arrays with golden vectors, test set, drift
    profile, manifest, model card) atomically; returns its name. `lineage` (parent version,
    data snapshot, comparison) goes into the manifest and the model card."""
    import json
    from hashlib import sha256

    from tinyship.convert import carray, golden, runtimes
    from tinyship.data.profile import reference_profile
    from tinyship.model_card import render_model_card

    timer = timer or _Timer(None)
    task = prep.task
    trained = tr.result
    _, y_te = prep.part("test")
    x_tr_raw = prep.x_all[prep.splits.train]
    tin = conv.info.inputs[0]
    # A per-channel model must fail its self-test on a library that reads weights per
    # tensor: take the rows such a board gets most wrong among the golden vectors.
    misread = golden.per_tensor_misread(conv.int8_tflite)
    faults = ([runtimes.run_tflm(misread, conv.xq, 2 * conv.arena)] if misread is not None
              else [])
    golden_rows = golden.pick_golden(
        conv.xq, conv.out_tflm, task=task, k=cfg.quantization.golden_vectors,
        input_zero_point=tin.zero_point, labels=y_te if task == "classification" else None,
        fault_outputs=faults,
    )
    with timer.stage("register", f"writing registry version to {registry.root}"), \
            registry.stage() as staged:
        assert staged.version is not None
        vdir = staged.dir
        trained.model.save(vdir / KERAS_FILE)
        (vdir / FLOAT_TFLITE).write_bytes(conv.float_tflite)
        (vdir / INT8_TFLITE).write_bytes(conv.int8_tflite)
        carray.write_c_files(
            vdir / FIRMWARE_DIR,
            conv.int8_tflite,
            conv.info,
            carray.ExportInputs(
                version=staged.version,
                profile=cfg.quantization.profile,
                arena_bytes=conv.arena,
                feature_mean=[float(v) for v in prep.scaler.mean],
                feature_std=[float(v) for v in prep.scaler.std],
                golden_inputs=conv.xq[golden_rows],
                golden_outputs=conv.out_tflm[golden_rows],
                target_mean=trained.target_mean,
                target_scale=trained.target_scale,
                tool_version=__version__,
            ),
        )
        np.savez_compressed(
            vdir / TEST_SET,
            x=prep.x_all[prep.splits.test].astype(np.float32),
            y=y_te,
            x_int8=conv.xq,
            reference_int8=conv.out_tflm,
        )
        train_pred = _train_predictions(tr, prep)
        (vdir / DRIFT_PROFILE).write_text(json.dumps(reference_profile(
            x_tr_raw, prep.features, predictions=train_pred)), encoding="utf-8")
        manifest: dict[str, Any] = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "tinyship_version": __version__,
            "git_commit": git_commit(cfg.base_dir),
            "profile": cfg.quantization.profile,
            "task": task,
            "features": prep.features,
            "dropped_features": prep.dropped,
            "target": cfg.data.target,
            "classes": prep.classes,
            "standardization": prep.scaler.to_dict(),
            "model": {
                "sha256": sha256(conv.int8_tflite).hexdigest(),
                "crc32": carray.crc32(conv.int8_tflite),
                "bytes": len(conv.int8_tflite),
                "float_bytes": len(conv.float_tflite),
                "arena_bytes": conv.arena,
                "arena_min_bytes": conv.arena_min,
                "ops": conv.info.ops,
                "macs": conv.info.macs,
                "input": tin.to_dict(),
                "output": conv.output_record,
                "type": cfg.model.type,
            },
            "data": prep.data_info,
            "metrics": result.metrics,
            "gates": result.gates,
            "config": cfg.to_dict(),
            "training_key": prep.key,
        }
        snapshot = _data_snapshot(registry, str(prep.data_info["sha256"]))
        if snapshot is not None:  # trained on a snapshot of the dataset store
            manifest["data"] = {**prep.data_info, "snapshot": snapshot}
        if lineage:
            manifest["lineage"] = lineage
        staged.manifest = manifest
        (vdir / MODEL_CARD).write_text(
            render_model_card({**manifest, "version": staged.version, "parent": staged.parent}),
            encoding="utf-8",
        )
    assert staged.version is not None
    return staged.version


def _data_snapshot(registry: Registry, sha256: str) -> str | None:
    """The dataset-store snapshot (`tinyship.data.store`) whose bytes these are, if any."""
    from tinyship.data.store import DatasetStore

    store = DatasetStore.for_registry(registry.root)
    found = store.find(sha256) if store.root.is_dir() else None
    return None if found is None else found.id


def _train_predictions(tr: Trained, prep: Prepared) -> np.ndarray:
    """The float model's predictions on the training rows (target units; classification:
    the top class), the reference for prediction drift (KS)."""
    from tinyship.train import model as train_model

    x_tr, _ = prep.part("train")
    out = tr.result.to_target_units(train_model.predict(tr.result.model, x_tr))
    if prep.task == "classification":
        return np.asarray(np.argmax(out, axis=1), dtype=np.float64)
    return np.asarray(out, dtype=np.float64).reshape(-1)


def run_pipeline(
    cfg: Config,
    *,
    data_path: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> PipelineResult:
    """Run the whole model half; returns the registered version, or raises DataError /
    GateError (with the full result attached) with the registry left unchanged.

    Training again on the same config, data and code registers nothing unless `force`:
    the result then names the existing version (`duplicate_of`).
    """
    from tinyship.registry import Registry

    timer = _Timer(progress)
    path = Path(data_path) if data_path is not None else cfg.dataset_path
    registry = Registry(cfg.registry_path)
    registry.check_writable()  # before minutes of training, not after
    prep = prepare_data(cfg, path, timer, registry=registry, force=force)
    if isinstance(prep, PipelineResult):
        return prep
    tr = train_stage(cfg, prep, timer)
    conv = convert_stage(cfg, prep, tr, timer)
    result = gate_stage(cfg, registry, prep, tr, conv, timer)
    result.version = register_stage(cfg, registry, prep, tr, conv, result, timer)
    result.timings_s = timer.timings
    from tinyship.tracking import log_training

    log_training(cfg, result, version=result.version, version_dir=registry.path(result.version))
    return result
