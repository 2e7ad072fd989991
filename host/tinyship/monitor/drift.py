"""Data and prediction drift against a version's training data: PSI and two-sample KS.

Why both: PSI on the training data's quantile bins is the usual drift score, with agreed
bands, and says where a distribution moved (which bins); the two-sample Kolmogorov-Smirnov
test needs no bins, gives a p-value, and works on the model's predictions as well as its
inputs (prediction drift).

Reference profile (`reference_profile`): training stores it in every version as
`drift_reference.json`, so drift never needs the training data again. Per feature:

* bin edges: the distinct training quantiles at 1/bins, ..., (bins-1)/bins (inverted CDF,
  so each edge is a training value); bins are right-closed: (-inf, e1], (e1, e2], ...,
  (ek, +inf). A discrete feature repeats quantiles, which collapse into one edge: it gets at
  most one bin per distinct value, and a rare value shares the bin above it. An edge equal
  to the training maximum would close an empty top bin, so it moves down to the largest
  training value below the maximum. A constant feature gets three bins (below, at, above
  the constant), so any departure from it shows. Only those two outer bins can be empty
  in training;
* the training fraction per bin, min/max, mean/std (population), the row count;
* a seeded sample of up to `sample` training values (the same rows for every feature and
  for the predictions), for KS. Stored compactly (`sample_encoding`): each value as
  float32 with its 7 lowest mantissa bits cleared (relative precision 2**-16, about five
  significant digits; integers up to 131072 exact), as an order-preserving uint32 key,
  sorted, delta-coded, byte planes zlib'ed, base64: at most ~9 KB a feature at 5000 values.

PSI = sum over bins of (q - p) ln(q / p), p the training fraction and q the current one.
Empty bins: both fractions are floored at EPSILON = 1e-4 (Evidently's choice) before the
sum, without renormalising. Why on both sides: ln(0) is undefined on either; with the same
floor on both, identical distributions still score exactly 0, while one decile emptied (or
filled where training had nothing) adds about 0.1 ln(0.1 / 1e-4) = 0.69, an alert, as it
should. `empty_bins` counts the bins floored. Bands: PSI < warn (0.10) ok, < alert (0.25)
warning, else alert.

KS: SciPy's two-sample test between the stored sample and the current values, both at the
sample's precision. With at most 10,000 values a side `scipy.stats.ks_2samp` runs as is
(exact p-value); above that the same statistic is computed from the sorted current column,
which PSI sorts anyway (~40 ms for 20 x 1e6 values instead of ~1.2 s in ks_2samp), and the
p-value is ks_2samp's asymptotic one, `kstwo.sf(D, round(n1 n2 / (n1 + n2)))`. Tests check
both against ks_2samp.

Current data: missing and non-finite values are left out per feature (`n_missing`). A
feature with fewer than MIN_ROWS (50) values left gets band "insufficient" and no PSI or
KS: below that, bins of 10 % stay empty by chance and its PSI is noise.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyship.data.profile import (
    bin_counts,
    decode_keys,
    ks_keys,
    validate_profile,
)
from tinyship.errors import DataError, TinyshipError

if TYPE_CHECKING:
    import pandas as pd

#: Floor on both bin fractions before the PSI's logarithm (module doc).
EPSILON = 1e-4
#: Fewer current values than this in a feature: reported as insufficient, not scored.
MIN_ROWS = 50
DEFAULT_WARN = 0.10
DEFAULT_ALERT = 0.25
OK, WARNING, ALERT, INSUFFICIENT = "ok", "warning", "alert", "insufficient"
_SEVERITY = {ALERT: 3, WARNING: 2, OK: 1, INSUFFICIENT: 0}
#: scipy.stats.ks_2samp computes an exact p-value up to this many values a side.
_KS_EXACT_MAX_N = 10_000


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnDrift:
    """One feature (or the predictions) against its training profile. `psi`, `ks_stat`,
    `ks_p`, `empty_bins` and `current_fractions` are None when band is "insufficient"."""

    feature: str
    band: str
    psi: float | None
    ks_stat: float | None
    ks_p: float | None
    critical: bool
    n_current: int
    n_missing: int
    empty_bins: int | None
    reference_mean: float
    current_mean: float | None
    reference_fractions: list[float]
    current_fractions: list[float] | None


@dataclass(frozen=True)
class DriftReport:
    """Per-feature drift, most severe first (band, then critical, PSI, KS statistic), and
    the predictions' when both sides have them."""

    features: list[ColumnDrift]
    predictions: ColumnDrift | None
    rows: int
    reference_rows: int
    warn: float
    alert: float
    notes: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> list[ColumnDrift]:
        return [r for r in self.features if r.band == ALERT]

    @property
    def warnings(self) -> list[ColumnDrift]:
        return [r for r in self.features if r.band == WARNING]

    @property
    def critical_alerts(self) -> list[ColumnDrift]:
        return [r for r in self.alerts if r.critical]

    @property
    def insufficient(self) -> list[ColumnDrift]:
        return [r for r in self.features if r.band == INSUFFICIENT]

    @property
    def worst(self) -> ColumnDrift | None:
        """The most severe scored feature; None when none could be scored."""
        return next((r for r in self.features if r.band != INSUFFICIENT), None)

    def to_dict(self) -> dict[str, Any]:
        worst = self.worst
        return {
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "thresholds": {"warning": self.warn, "alert": self.alert},
            "epsilon": EPSILON,
            "min_rows": MIN_ROWS,
            "alerts": [r.feature for r in self.alerts],
            "warnings": [r.feature for r in self.warnings],
            "critical_alerts": [r.feature for r in self.critical_alerts],
            "insufficient": [r.feature for r in self.insufficient],
            "worst": worst.feature if worst else None,
            "features": [asdict(r) for r in self.features],
            "predictions": asdict(self.predictions) if self.predictions else None,
            "notes": list(self.notes),
        }

    def write_png(self, path: Path) -> None:
        """A horizontal bar chart of PSI per feature, worst at the top, coloured by band,
        with the two band lines; replaced atomically."""
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure
        except ImportError:
            raise TinyshipError("the drift chart needs matplotlib",
                                hint="pip install 'tinyship[plot]' (or drop --png)") from None
        from tinyship.atomic import write_bytes_atomic

        colours = {ALERT: "#d62728", WARNING: "#ff7f0e", OK: "#2ca02c", INSUFFICIENT: "#999999"}
        rows = self.features[::-1]  # barh draws the first row at the bottom
        fig = Figure(figsize=(8.0, 1.6 + 0.32 * max(len(rows), 1)))
        FigureCanvasAgg(fig)  # the Agg backend, without pyplot's global state
        ax = fig.add_subplot()
        ys = np.arange(len(rows))
        values = [r.psi or 0.0 for r in rows]
        ax.barh(ys, values, color=[colours[r.band] for r in rows])
        ax.set_yticks(ys, labels=[r.feature + (" *" if r.critical else "") for r in rows])
        for y, r in enumerate(rows):
            text = f" {r.psi:.3f}" if r.psi is not None else f" too few rows ({r.n_current})"
            ax.text(r.psi or 0.0, y, text, va="center", fontsize=8)
        ax.axvline(self.warn, color=colours[WARNING], ls="--", lw=1,
                   label=f"warning {self.warn:g}")
        ax.axvline(self.alert, color=colours[ALERT], ls="--", lw=1, label=f"alert {self.alert:g}")
        ax.set_xlim(0, 1.2 * max([*values, self.alert]))
        ax.set_xlabel("PSI on the training data's quantile bins"
                      + ("   (* critical)" if any(r.critical for r in rows) else ""))
        title = f"Data drift: {self.rows:,} rows against {self.reference_rows:,} training rows"
        p = self.predictions
        if p is not None and p.ks_stat is not None and p.ks_p is not None:
            title += f"\npredictions: KS {p.ks_stat:.3f} (p = {p.ks_p:.3g}), PSI {p.psi:.3f}"
        ax.set_title(title, fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        write_bytes_atomic(Path(path), buf.getvalue(), mode=0o644)


def psi(reference: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray, *,
        epsilon: float = EPSILON) -> float:
    """PSI of two bin-fraction vectors, both floored at `epsilon` (module doc)."""
    p = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    q = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def band(value: float, warn: float = DEFAULT_WARN, alert: float = DEFAULT_ALERT) -> str:
    return ALERT if value >= alert else WARNING if value >= warn else OK


def drift_report(profile: dict[str, Any], current: pd.DataFrame | np.ndarray, *,
                 feature_names: Sequence[str] | None = None, critical: Sequence[str] = (),
                 current_predictions: Any = None, warn: float = DEFAULT_WARN,
                 alert: float = DEFAULT_ALERT) -> DriftReport:
    """Drift of `current` (a DataFrame with the feature columns, or an array whose columns
    are `feature_names` in order) against a `reference_profile`. `feature_names` defaults to
    the profile's. One sort per feature, then a few searchsorted calls of the edges and KS
    sample into it: no pass over the rows in Python.

    Raises DataError naming the column for a missing or non-numeric feature column, and
    ValueError for a bad profile, thresholds, or feature or critical names not in it.
    """
    validate_profile(profile)
    if not 0 < warn <= alert:
        raise ValueError(f"thresholds must satisfy 0 < warn <= alert, got {warn} and {alert}")
    names = list(profile["feature_names"] if feature_names is None else feature_names)
    unknown = [f for f in (*names, *critical) if f not in profile["features"]]
    if unknown:
        raise ValueError(f"not in the drift profile: {unknown} (its features: "
                         f"{profile['feature_names']})")
    marked = set(critical)
    size = int(profile["sample_size"])
    rows = [_column_drift(profile["features"][f], f, col, f in marked, size, warn, alert)
            for f, col in zip(names, _columns(current, names), strict=True)]
    rows.sort(key=lambda r: (-_SEVERITY[r.band], not r.critical, -(r.psi or 0.0),
                             -(r.ks_stat or 0.0), r.feature))
    notes: list[str] = []
    pred = None
    if current_predictions is not None:
        if profile.get("predictions") is None:
            notes.append("the profile has no training predictions: no prediction drift")
        else:
            values = _as_float(current_predictions, "predictions")
            pred = _column_drift(profile["predictions"], "predictions", values, False, size,
                                 warn, alert)
    n_rows = len(current)
    if n_rows < MIN_ROWS:
        notes.append(f"only {n_rows} current rows (fewer than {MIN_ROWS}): not scored")
    return DriftReport(features=rows, predictions=pred, rows=n_rows,
                       reference_rows=int(profile["rows"]), warn=warn, alert=alert, notes=notes)


def _column_drift(ref: dict[str, Any], name: str, values: np.ndarray, critical: bool,
                  sample_size: int, warn: float, alert: float) -> ColumnDrift:
    s = np.sort(values)  # NaN sorts last; +-inf at the ends
    s = s[np.searchsorted(s, -np.inf, side="right"):np.searchsorted(s, np.inf, side="left")]
    n = int(s.size)
    p = np.asarray(ref["fractions"], dtype=np.float64)
    common = {"feature": name, "critical": critical, "n_current": n,
              "n_missing": int(values.size) - n, "reference_mean": float(ref["mean"]),
              "current_mean": float(s.mean()) if n else None,
              "reference_fractions": p.tolist()}
    if n < MIN_ROWS:
        return ColumnDrift(band=INSUFFICIENT, psi=None, ks_stat=None, ks_p=None,
                           empty_bins=None, current_fractions=None, **common)
    q = bin_counts(s, np.asarray(ref["edges"], dtype=np.float64)) / n
    value = psi(p, q)
    ks_stat, ks_p = _ks_sorted(decode_keys(ref["sample"], sample_size), ks_keys(s))
    return ColumnDrift(band=band(value, warn, alert), psi=value, ks_stat=ks_stat, ks_p=ks_p,
                       empty_bins=int(np.count_nonzero((p == 0) | (q == 0))),
                       current_fractions=q.tolist(), **common)


def _ks_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample KS (statistic, two-sided p) of sorted keys `a` (the reference sample)
    and `b` (the current values); equal to `scipy.stats.ks_2samp(a, b)` (module doc)."""
    from scipy import stats

    n1, n2 = int(a.size), int(b.size)
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        res = stats.ks_2samp(a, b)
        return float(res.statistic), float(res.pvalue)
    # The ECDFs are steps at the data. At each distinct reference value u_j compare both;
    # between u_(j-1) and u_j the reference ECDF is flat while the current one climbs, so
    # the current side's largest excess there is just below u_j (count of b < u_j).
    u = a[np.r_[True, a[1:] != a[:-1]]]
    f1 = np.searchsorted(a, u, side="right") / n1
    f1_before = np.r_[0.0, f1[:-1]]
    f2 = np.searchsorted(b, u, side="right") / n2
    f2_below = np.searchsorted(b, u, side="left") / n2
    d = float(max(np.max(np.abs(f1 - f2)), np.max(f2_below - f1_before), 0.0))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    p = float(np.clip(stats.kstwo.sf(d, np.round(m * n / (m + n))), 0.0, 1.0))
    return d, p


def _columns(current: Any, names: list[str]) -> list[np.ndarray]:
    """Each feature column of `current` as float64 (missing as NaN), by name from a
    DataFrame (a view when it already is float64), by position from an array."""
    if hasattr(current, "columns"):  # a pandas DataFrame
        missing = [f for f in names if f not in current.columns]
        if missing:
            raise missing_columns(missing, [str(c) for c in current.columns], "current data")
        return [_as_float(current[f], f) for f in names]
    arr = np.asarray(current)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise DataError(f"current data has shape {arr.shape}, expected (rows, {len(names)}) "
                        f"with columns {names}")
    return [_as_float(arr[:, j], f) for j, f in enumerate(names)]


def _as_float(col: Any, name: str) -> np.ndarray:
    """A column (Series or array-like, flattened) as float64 with missing values as NaN;
    DataError naming it when a value is not a number."""
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    if not isinstance(col, pd.Series):
        arr = np.asarray(col).reshape(-1)
        if arr.dtype.kind in "biuf":
            return arr.astype(np.float64, copy=False)
        col = pd.Series(arr)
    s = col
    out: np.ndarray
    if is_numeric_dtype(s.dtype):
        if isinstance(s.dtype, np.dtype):
            out = s.to_numpy(dtype=np.float64)  # a view when already float64
        else:  # nullable Int64 / Float64
            out = s.to_numpy(dtype=np.float64, na_value=np.nan)
        return out
    converted = pd.to_numeric(s, errors="coerce")
    bad = converted.isna() & s.notna()
    if bad.any():
        raise DataError(f"column '{name}' is not numeric: {int(bad.sum())} value(s) such as "
                        f"{s[bad].iloc[0]!r}",
                        hint="drift needs the feature values as numbers, as in training")
    out = converted.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def missing_columns(missing: list[str], available: list[str], what: str) -> DataError:
    names = ", ".join(f"'{c}'" for c in missing)
    return DataError(f"{what} is missing feature column(s) {names} (available: "
                     f"{', '.join(available) or 'none'})",
                     hint="the columns must be named as in the version's training data")


def read_current_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """The `columns` of a CSV (others are not read); DataError naming the file when it is
    missing, unreadable, or lacks a column (all missing ones named)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"current data not found: {path}" if not path.exists()
                        else f"current data is not a file: {path}")
    try:
        header = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        missing = [c for c in columns if c not in header]
        if missing:
            raise missing_columns(missing, header, f"current data {path}")
        return pd.read_csv(path, usecols=list(columns))
    except pd.errors.EmptyDataError:
        raise DataError(f"current data file is empty: {path}") from None
    except UnicodeDecodeError:
        raise DataError(f"current data {path} is not UTF-8 text",
                        hint="re-save the CSV as UTF-8") from None
    except (pd.errors.ParserError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"current data {path} is not a readable CSV: {first}") from None
    except OSError as e:
        raise DataError(f"cannot read current data {path}: {e.strerror or e}") from None
