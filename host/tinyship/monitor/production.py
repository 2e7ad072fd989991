"""How the model does in production: logged device predictions joined with ground truth
that arrived later, scored overall, per slice and per time window.

Why a log and not the registry's test set: the test set says how a version did on the
data it was trained from; only predictions made on boards, scored once the truth is known
(a cell's capacity measured weeks later), say how it does now.

Prediction log (CSV, one row per prediction a board made; extra columns are ignored)::

    column          required  meaning
    id              yes       unique per prediction: the key late truth is joined on
    timestamp       yes       ISO 8601 (no offset: UTC) of the prediction
    device_id       no        the board; one slice per board
    model_version   no        the registry version the board ran; one slice per version
    prediction      yes (1)   regression: the value in target units; classification: the
                              class label, as in the training data
    p_<class>       no        classification: the probability of <class>; the largest is
                              the prediction's confidence
    <feature>       no        the model's input features in raw units (as in training)
    target          no        the ground truth; empty until it is known

    (1) classification may leave it out when p_<class> columns are present: the top class.

Late truth (`truth=`): a CSV `id,<target>`, the value column named `target`, named as the
model's target (`soh_pct`), or the only column besides `id`. It is joined on `id` and
replaces the log's own `target` where both exist (it is the later word); truth rows whose
id is not in the log are counted (`truth_unmatched`), not used.

Slices: `all`; `long_tail`, the rows tinyship's training calls the long tail
(regression: `tinyship.pipeline.long_tail_mask` of the version's config, the cut taken from
the version's held-out targets since the training targets are not stored; classification:
the rarest classes holding at most 1 - `data.long_tail.quantile` of the reference rows);
`low_confidence`; `device:<id>`; `model_version:<v>`. Slices by the truth (long tail) hold
labelled rows only.

Low confidence: classification, top-class probability below `confidence_threshold`
(default 0.6); regression, any input feature outside the range the version was trained on
(per-feature min/max from its `drift_reference.json`). Without those inputs the rule is
reported unavailable, never guessed.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyship.errors import DataError, RegistryError

if TYPE_CHECKING:
    import pandas as pd

    from tinyship.config import Config
    from tinyship.registry import Registry

#: Headline metrics per task: what the report, the exporter and the alert rules use.
HEADLINE: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "rmse"),
    "classification": ("accuracy", "macro_f1"),
}
DEFAULT_CONFIDENCE = 0.6
PROBA_PREFIX = "p_"
REQUIRED = ("id", "timestamp")
_WINDOW_RE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_WINDOW_UNITS = {"m": "min", "h": "h", "d": "D", "w": "W"}


def parse_window(spec: str) -> pd.Timedelta:
    """`30m`, `12h`, `1d`, `7d`, `2w` as a Timedelta; ValueError for anything else."""
    import pandas as pd

    m = _WINDOW_RE.match(spec)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"window must be a positive count and a unit m/h/d/w (1d, 7d), "
                         f"got {spec!r}")
    return pd.Timedelta(int(m.group(1)), _WINDOW_UNITS[m.group(2)])


# --- inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelReference:
    """What a registry version contributes: its task and classes, the config that defines
    its long tail, its held-out targets, its registered test metrics and its input ranges."""

    version: str
    task: str
    target: str
    classes: list[str]
    config: Config
    #: The held-out targets (class labels for classification): the distribution the
    #: long-tail cut and the rare classes come from.
    y_reference: np.ndarray
    #: Registered int8 test metrics per slice (`all`, `long_tail`): the alert baseline.
    registered: dict[str, dict[str, float]]
    #: Per-feature (min, max) of the training rows; None when the version has no profile.
    feature_ranges: dict[str, tuple[float, float]] | None
    feature_ranges_note: str = ""


def load_reference(registry: Registry, ref: str | None = None) -> ModelReference:
    """A version's `ModelReference`; artifacts are read through the registry, so a damaged
    one is refused with its name. A missing drift profile is not an error: the regression
    low-confidence rule is then unavailable."""
    from tinyship.config import parse_config
    from tinyship.data.profile import PROFILE_FILE as DRIFT_PROFILE
    from tinyship.errors import ConfigError
    from tinyship.pipeline import TEST_SET

    version = registry.resolve(ref)
    manifest = registry.manifest(version)
    try:
        cfg = parse_config(manifest["config"], base_dir=registry.root,
                           source=f"{version}/manifest.json config")
    except (KeyError, TypeError, ConfigError) as e:
        raise RegistryError(f"{version}: the manifest's config is unusable: {e}") from None
    task = str(manifest.get("task", cfg.data.task))
    classes = [str(c) for c in manifest.get("classes") or []]
    with np.load(io.BytesIO(registry.read_artifact(version, TEST_SET))) as z:
        y_ref = np.asarray(z["y"])
    if task == "classification" and classes:
        y_ref = np.asarray(classes, dtype=object)[y_ref.astype(np.int64)]
    int8 = (manifest.get("metrics") or {}).get("int8") or {}
    registered = {"all": _headline(task, int8)}
    if isinstance(int8.get("long_tail"), dict):
        registered["long_tail"] = _headline(task, int8["long_tail"])
    ranges: dict[str, tuple[float, float]] | None = None
    if DRIFT_PROFILE in registry.artifacts(version):
        ranges = _feature_ranges(json.loads(registry.read_artifact(version, DRIFT_PROFILE)))
        note = f"training ranges from {version}/{DRIFT_PROFILE}"
    else:
        note = f"{version} has no {DRIFT_PROFILE} (trained before drift profiles)"
    return ModelReference(version=version, task=task, target=cfg.data.target, classes=classes,
                          config=cfg, y_reference=y_ref, registered=registered,
                          feature_ranges=ranges, feature_ranges_note=note)


def _headline(task: str, metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in HEADLINE[task]
            if isinstance(metrics.get(k), int | float)}


def _feature_ranges(profile: Any) -> dict[str, tuple[float, float]]:
    """`features: {name: {min, max, ...}}` of a drift profile; entries without numeric
    bounds are skipped (that feature is then never flagged)."""
    feats = profile.get("features") if isinstance(profile, dict) else None
    out: dict[str, tuple[float, float]] = {}
    for name, f in (feats or {}).items():
        lo, hi = (f.get("min"), f.get("max")) if isinstance(f, dict) else (None, None)
        if isinstance(lo, int | float) and isinstance(hi, int | float):
            out[str(name)] = (float(lo), float(hi))
    return out


@dataclass(frozen=True)
class PredictionLog:
    """A prediction log with its late truth joined in (`frame`; `target` NaN = unknown)."""

    frame: pd.DataFrame
    path: str
    truth_path: str | None = None
    truth_rows: int = 0
    truth_unmatched: int = 0


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    """A CSV with every cell as text and only empty cells missing: a class named `NA`
    stays a class."""
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise DataError(f"{what} {path} not found") from None
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{what} {path} is not a readable CSV: {e}") from None


def _ids_sample(ids: Any) -> str:
    shown = [str(i) for i in list(ids)[:5]]
    return ", ".join(shown) + (", ..." if len(ids) > 5 else "")


def _unique_ids(df: pd.DataFrame, what: str) -> None:
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise DataError(f"{what}: {len(dup)} duplicated id(s): {_ids_sample(dup.unique())}",
                        hint="every prediction needs its own id: late truth is joined on it")


def load_predictions(path: Path, truth: Path | None = None, *,
                     target_name: str | None = None) -> PredictionLog:
    """Read a prediction log (format in the module doc) and join late truth on `id`."""
    import pandas as pd

    df = _read_csv(path, "prediction log")
    missing = [c for c in REQUIRED if c not in df.columns]
    has_proba = any(c.startswith(PROBA_PREFIX) for c in df.columns)
    if "prediction" not in df.columns and not has_proba:
        missing.append("prediction")
    if missing:
        raise DataError(f"prediction log {path}: missing column(s) {', '.join(missing)}",
                        hint="columns: id,timestamp[,device_id,model_version],prediction"
                        "[,p_<class>...][,<features>...][,target]")
    if df["id"].isna().any():
        raise DataError(f"prediction log {path}: {int(df['id'].isna().sum())} row(s) "
                        "without an id")
    _unique_ids(df, f"prediction log {path}")
    ts = pd.to_datetime(df["timestamp"], utc=True, errors="coerce", format="ISO8601")
    bad = df["id"][ts.isna()]
    if len(bad):
        raise DataError(f"prediction log {path}: {len(bad)} row(s) without an ISO 8601 "
                        f"timestamp (ids {_ids_sample(bad)})")
    df["timestamp"] = ts
    if "target" not in df.columns:
        df["target"] = np.nan
    out = PredictionLog(frame=df, path=str(path))
    if truth is None:
        return out
    t = _read_csv(truth, "truth file")
    if "id" not in t.columns:
        raise DataError(f"truth file {truth}: no `id` column", hint="columns: id,<target>")
    value_cols = [c for c in t.columns if c != "id"]
    col = next((c for c in ("target", target_name) if c in value_cols), None)
    if col is None and len(value_cols) == 1:
        col = value_cols[0]
    if col is None:
        raise DataError(f"truth file {truth}: cannot tell the target column among "
                        f"{', '.join(value_cols) or 'none'}",
                        hint=f"name it `target`{f' or `{target_name}`' if target_name else ''}")
    t = t[["id", col]].dropna()
    _unique_ids(t, f"truth file {truth}")
    known = t.set_index("id")[col]
    late = df["id"].map(known)
    df["target"] = late.where(late.notna(), df["target"])
    return PredictionLog(frame=df, path=str(path), truth_path=str(truth),
                         truth_rows=len(t), truth_unmatched=int((~t["id"].isin(df["id"])).sum()))


# --- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceMetrics:
    """One slice: its predictions, how many have truth, headline metrics on those (empty
    without any) and how many were flagged low-confidence (None: rule unavailable)."""

    name: str
    rows: int
    labelled: int
    metrics: dict[str, float]
    low_confidence: int | None

    @property
    def low_confidence_ratio(self) -> float | None:
        if self.low_confidence is None or self.rows == 0:
            return None
        return self.low_confidence / self.rows

    def to_dict(self) -> dict[str, Any]:
        return {"slice": self.name, "rows": self.rows, "labelled": self.labelled,
                "metrics": self.metrics, "low_confidence": self.low_confidence,
                "low_confidence_ratio": self.low_confidence_ratio}


@dataclass(frozen=True)
class WindowMetrics:
    """One time window [start, end) of the log, all slices together."""

    start: str
    end: str
    overall: SliceMetrics

    def to_dict(self) -> dict[str, Any]:
        d = self.overall.to_dict()
        del d["slice"]
        return {"start": self.start, "end": self.end, **d}


@dataclass(frozen=True)
class LowConfidence:
    """The low-confidence rule applied, or why none could be."""

    rule: str
    available: bool
    detail: str
    flagged: int = 0
    by_feature: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "available": self.available, "detail": self.detail,
                "flagged": self.flagged, "by_feature": self.by_feature}


@dataclass
class ProductionReport:
    """Production performance of one prediction log (see the module doc)."""

    task: str
    version: str | None
    predictions: str
    truth: str | None
    rows: int
    labelled: int
    truth_unmatched: int
    first: str | None
    last: str | None
    long_tail: str | None
    low_confidence: LowConfidence
    #: Over the whole log: all, long_tail, low_confidence, device:*, model_version:*.
    slices: list[SliceMetrics]
    #: The same slices over the trailing `window` up to the newest prediction.
    window: str | None = None
    recent: list[SliceMetrics] = field(default_factory=list)
    #: The log cut into consecutive windows (pandas resample), oldest first.
    windows: list[WindowMetrics] = field(default_factory=list)
    #: The version's registered int8 test metrics per slice: what production is held to.
    registered: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def slice(self, name: str, *, recent: bool = False) -> SliceMetrics | None:
        return next((s for s in (self.recent if recent else self.slices) if s.name == name),
                    None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task, "version": self.version, "predictions": self.predictions,
            "truth": self.truth, "rows": self.rows, "labelled": self.labelled,
            "truth_unmatched": self.truth_unmatched, "first": self.first, "last": self.last,
            "long_tail": self.long_tail, "low_confidence": self.low_confidence.to_dict(),
            "slices": [s.to_dict() for s in self.slices], "window": self.window,
            "recent": [s.to_dict() for s in self.recent],
            "windows": [w.to_dict() for w in self.windows],
            "registered": self.registered, "notes": self.notes,
        }


def _infer_task(df: pd.DataFrame) -> str:
    import pandas as pd

    if any(c.startswith(PROBA_PREFIX) for c in df.columns) or "prediction" not in df.columns:
        return "classification"
    pred = df["prediction"].dropna()
    return "regression" if pd.to_numeric(pred, errors="coerce").notna().all() else (
        "classification")


def _numeric(df: pd.DataFrame, col: str, what: str) -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(df[col], errors="coerce")
    bad = df["id"][values.isna() & df[col].notna()]
    if len(bad):
        raise DataError(f"{what}: {len(bad)} non-numeric {col} value(s) (ids "
                        f"{_ids_sample(bad)})")
    return np.asarray(values.to_numpy(dtype=np.float64))


def _prepare(log: PredictionLog, task: str) -> tuple[pd.DataFrame, list[str]]:
    """The log with `_y`, `_pred`, `_labelled` (and for classification `_conf`) columns in
    task types; returns it and the classes seen (classification)."""
    df = log.frame.copy()
    proba = [c for c in df.columns if c.startswith(PROBA_PREFIX)]
    what = f"prediction log {log.path}"
    if task == "regression":
        df["_pred"] = _numeric(df, "prediction", what)
        df["_y"] = _numeric(df, "target", what + " (truth)")
        df["_labelled"] = df["_y"].notna()
        missing = df["id"][df["_pred"].isna()]
        seen: list[str] = []
    else:
        pred = df["prediction"] if "prediction" in df.columns else None
        if proba:  # confidence = top probability; it names the class when none is logged
            p = np.column_stack([_numeric(df, c, what) for c in proba])
            known = ~np.isnan(p).all(axis=1)
            filled = np.where(np.isnan(p), -np.inf, p)
            df["_conf"] = np.where(known, filled.max(axis=1), np.nan)
            top = np.asarray([c[len(PROBA_PREFIX):] for c in proba], dtype=object)[
                filled.argmax(axis=1)]
            top[~known] = None
            pred = top if pred is None else pred.where(pred.notna(), top)
        df["_pred"] = pred
        df["_y"] = df["target"]
        df["_labelled"] = df["_y"].notna()
        missing = df["id"][df["_pred"].isna()]
        seen = sorted({str(v) for v in (*df["_pred"].dropna(), *df["_y"].dropna())})
    if len(missing):
        raise DataError(f"{what}: {len(missing)} row(s) without a prediction (ids "
                        f"{_ids_sample(missing)})")
    return df, seen


def rare_classes(labels: np.ndarray, share: float) -> list[str]:
    """The rarest classes that together hold at most `share` of `labels`; at least the
    single rarest one, so a balanced problem still has a long-tail slice."""
    values, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    if len(values) == 0:
        return []
    order = np.argsort(counts, kind="stable")
    cum = np.cumsum(counts[order]) / counts.sum()
    k = max(1, int(np.searchsorted(cum, share, side="right")))
    return sorted(str(v) for v in values[order][:k])


def _long_tail(df: pd.DataFrame, task: str, ref: ModelReference | None
               ) -> tuple[np.ndarray | None, str | None, str | None]:
    """The long-tail mask over the log's rows (labelled rows only), its description, or a
    note on why there is none."""
    if task == "regression":
        if ref is None:
            return None, None, "long-tail slice unavailable: no model version to take the " \
                               "cut from"
        from tinyship.pipeline import long_tail_mask

        mask, desc = long_tail_mask(df["_y"].to_numpy(dtype=np.float64),
                                    np.asarray(ref.y_reference, dtype=np.float64), ref.config)
        return np.asarray(mask, dtype=bool), desc, None
    from tinyship.config import LongTailSection

    quantile = ref.config.data.long_tail.quantile if ref else LongTailSection().quantile
    source = ref.y_reference if ref is not None else df["_y"].dropna().to_numpy()
    rare = rare_classes(source, 1.0 - quantile)
    if not rare:
        return None, None, "long-tail slice unavailable: no class labels to rank"
    mask = df["_y"].astype(str).isin(rare).to_numpy() & df["_labelled"].to_numpy()
    rows = f"{ref.version}'s test rows" if ref else "the labelled rows"
    desc = f"true class in {{{', '.join(rare)}}} (rarest, <= {1 - quantile:.0%} of {rows})"
    return mask, desc, None


def _low_confidence(df: pd.DataFrame, task: str, ref: ModelReference | None,
                    threshold: float) -> tuple[np.ndarray | None, LowConfidence]:
    if task == "classification":
        rule = f"top-class probability < {threshold:g}"
        if "_conf" not in df.columns:
            return None, LowConfidence(rule, False, "the log has no p_<class> columns")
        flagged = (df["_conf"] < threshold).to_numpy()
        return flagged, LowConfidence(rule, True, "probabilities from the p_<class> columns",
                                      int(flagged.sum()))
    rule = "an input feature outside the training range"
    if ref is None:
        return None, LowConfidence(rule, False, "no model version: no training ranges")
    if ref.feature_ranges is None:
        return None, LowConfidence(rule, False, ref.feature_ranges_note)
    cols = [f for f in ref.feature_ranges if f in df.columns]
    if not cols:
        return None, LowConfidence(rule, False, "the log has none of the model's feature "
                                   "columns")
    flagged = np.zeros(len(df), dtype=bool)
    by_feature: dict[str, int] = {}
    for f in cols:
        lo, hi = ref.feature_ranges[f]
        x = _numeric(df, f, "prediction log")
        out = (x < lo) | (x > hi)  # NaN compares False: a missing input is not flagged
        by_feature[f] = int(out.sum())
        flagged |= out
    detail = f"{ref.feature_ranges_note}; {len(cols)} of {len(ref.feature_ranges)} features " \
             "logged"
    return flagged, LowConfidence(rule, True, detail, int(flagged.sum()), by_feature)


def _metrics(task: str, sub: pd.DataFrame, classes: list[str]) -> dict[str, float]:
    """Headline metrics of the labelled rows of `sub` (`tinyship.train.metrics`)."""
    from tinyship.train.metrics import classification_metrics, regression_metrics

    lab = sub[sub["_labelled"]]
    if lab.empty:
        return {}
    if task == "regression":
        m: dict[str, Any] = regression_metrics(lab["_y"].to_numpy(), lab["_pred"].to_numpy())
    else:
        index = {c: i for i, c in enumerate(classes)}
        y = lab["_y"].astype(str).map(index).to_numpy(dtype=np.int64)
        p = lab["_pred"].astype(str).map(index).to_numpy(dtype=np.int64)
        m = classification_metrics(y, p, len(classes))
    return {k: float(m[k]) for k in HEADLINE[task]}


def _slices(df: pd.DataFrame, task: str, classes: list[str], *, with_tail: bool,
            with_low: bool, low_available: bool) -> list[SliceMetrics]:
    def one(name: str, sub: pd.DataFrame) -> SliceMetrics:
        low = int(sub["_low"].sum()) if low_available else None
        return SliceMetrics(name, len(sub), int(sub["_labelled"].sum()),
                            _metrics(task, sub, classes), low)

    out = [one("all", df)]
    if with_tail:
        out.append(one("long_tail", df[df["_tail"]]))
    if with_low:
        out.append(one("low_confidence", df[df["_low"]]))
    for col, prefix in (("device_id", "device"), ("model_version", "model_version")):
        if col in df.columns:
            for key, sub in df.groupby(df[col].fillna("unknown"), sort=True):
                out.append(one(f"{prefix}:{key}", sub))
    return out


def production_report(log: PredictionLog, reference: ModelReference | None = None, *,
                      task: str | None = None, window: str | None = "7d",
                      confidence_threshold: float = DEFAULT_CONFIDENCE) -> ProductionReport:
    """Score a prediction log: overall, per slice, over the trailing `window` and per
    window; `task` defaults to the reference's, else is inferred from the log."""
    if not 0.0 < confidence_threshold <= 1.0:
        raise ValueError(f"confidence_threshold must be in (0, 1], got {confidence_threshold}")
    td = parse_window(window) if window is not None else None
    task = task or (reference.task if reference else _infer_task(log.frame))
    if task not in HEADLINE:
        raise ValueError(f"task must be regression or classification, got {task!r}")
    df, seen = _prepare(log, task)
    classes = sorted({*(reference.classes if reference else []), *seen})
    notes: list[str] = []
    if reference is None:
        notes.append("no model version: no registered metrics to compare against")
    tail, tail_desc, tail_note = _long_tail(df, task, reference)
    if tail_note:
        notes.append(tail_note)
    df["_tail"] = tail if tail is not None else False
    low, low_info = _low_confidence(df, task, reference, confidence_threshold)
    df["_low"] = low if low is not None else False

    def slices(sub: pd.DataFrame) -> list[SliceMetrics]:
        return _slices(sub, task, classes, with_tail=tail is not None,
                       with_low=low is not None, low_available=low_info.available)

    report = ProductionReport(
        task=task, version=reference.version if reference else None,
        predictions=log.path, truth=log.truth_path, rows=len(df),
        labelled=int(df["_labelled"].sum()), truth_unmatched=log.truth_unmatched,
        first=_iso(df["timestamp"].min()), last=_iso(df["timestamp"].max()),
        long_tail=tail_desc, low_confidence=low_info, slices=slices(df),
        registered=reference.registered if reference else {}, notes=notes)
    if td is not None and len(df):
        report.window = window
        report.recent = slices(df[df["timestamp"] > df["timestamp"].max() - td])
        for start, sub in df.resample(td, on="timestamp"):
            overall = _slices(sub, task, classes, with_tail=False, with_low=False,
                              low_available=low_info.available)[0]
            report.windows.append(WindowMetrics(_iso(start) or "", _iso(start + td) or "",
                                                overall))
    return report


def _iso(ts: Any) -> str | None:
    """ISO 8601 of a pandas timestamp; None for NaT (an empty log)."""
    import pandas as pd

    return None if ts is None or pd.isna(ts) else str(ts.isoformat())
