"""Data checks run before training, and again before any retraining is allowed.

Why a gate: a model trained on a CSV with a unit mix-up, a stuck sensor or a duplicated
export looks fine in its metrics and is wrong on the device. Each check is one rule on one
column (or the whole frame) with a threshold from `[data]` in the config, so a failure can
say exactly which column broke which rule, and the report is also machine-readable.

Rules: ``column_present``, ``min_rows``, ``missing``, ``non_numeric``, ``non_finite``,
``range``, ``duplicates``, ``outliers`` (robust z-score, median/MAD), ``constant_feature``
(fails, or is reported and passes, per ``data.constant_features``), ``constant_target``,
``min_class_samples`` (classification only). `model_features` applies the same constant
rule to decide which features are model inputs, so the checks and the model never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from tinyship.config import DataSection
from tinyship.errors import DataError

#: MAD * 1.4826 estimates the standard deviation of normal data.
_MAD_TO_SD = 1.4826
#: Mean absolute deviation * 1.2533 estimates it too; used when the MAD is 0.
_MEANAD_TO_SD = 1.2533

Number = int | float


@dataclass(frozen=True)
class CheckResult:
    """One rule applied to one column (``column`` is None for whole-frame rules)."""

    name: str
    column: str | None
    rule: str
    passed: bool
    value: Number | str | None
    threshold: Number | str | None
    message: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class CheckReport:
    """All check results for one dataset; `raise_for_failures` turns failures into DataError."""

    rows: int
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "checks": len(self.results),
            "failed": len(self.failures),
            "results": [r.to_dict() for r in self.results],
        }

    def raise_for_failures(self) -> None:
        """Raise DataError listing every failing column and rule; no-op when all passed."""
        failures = self.failures
        if not failures:
            return
        lines = "\n".join(f"  - {r.message}" for r in failures)
        raise DataError(
            f"{len(failures)} data check(s) failed:\n{lines}",
            failures=[r.to_dict() for r in failures],
            hint="fix the CSV or adjust the thresholds in [data] of the config",
        )


def _where(column: str | None) -> str:
    return f"column '{column}'" if column is not None else "dataset"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _g(x: float) -> str:
    return f"{x:g}"


#: Human name of each rule, shown in the report table.
RULES: dict[str, str] = {
    "column_present": "column present",
    "min_rows": "row count",
    "missing": "missing values",
    "non_numeric": "numeric values",
    "non_finite": "finite values",
    "range": "declared range",
    "duplicates": "duplicate rows",
    "constant_feature": "constant feature",
    "outliers": "outliers",
    "constant_target": "constant target",
    "min_class_samples": "class size",
}


class _Collector:
    def __init__(self) -> None:
        self.results: list[CheckResult] = []

    def add(
        self,
        rule: str,
        column: str | None,
        passed: bool,
        value: Number | str | None,
        threshold: Number | str | None,
        detail: str,
    ) -> None:
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(threshold, np.generic):
            threshold = threshold.item()
        message = f"{_where(column)}: {detail} (rule: {rule})"
        self.results.append(
            CheckResult(RULES[rule], column, rule, bool(passed), value, threshold, message)
        )


def _as_numeric(s: pd.Series) -> tuple[pd.Series, int]:
    """Float view of a column and the count of non-empty values that are not numbers."""
    if pd.api.types.is_numeric_dtype(s):
        return s.astype(float), 0
    num = pd.to_numeric(s, errors="coerce").astype(float)
    bad = int((s.notna() & num.isna()).sum())
    return num, bad


def _distinct(num: pd.Series) -> int:
    """Distinct finite values of a numeric column: 1 (or 0) means a constant column."""
    x = num.to_numpy()
    return int(np.unique(x[np.isfinite(x)]).size)


def _constant_verdict(distinct: int, policy: str, all_constant: bool) -> tuple[bool, str]:
    """(passed, message tail) of the constant_feature rule for one column under `policy`."""
    if distinct > 1:
        return True, ""
    if policy == "drop" and all_constant:
        return False, ": every feature is constant, so dropping them leaves the model no input"
    if policy == "drop":
        return True, ': dropped from the model inputs (data.constant_features = "drop")'
    if policy == "allow":
        return True, ': kept as a model input (data.constant_features = "allow")'
    return False, (
        ': carries no information; set data.constant_features = "drop" to leave it out of'
        ' the model inputs, or "allow" to keep it'
    )


def model_features(df: pd.DataFrame, data_cfg: DataSection) -> tuple[list[str], list[str]]:
    """(features kept as model inputs, constant features dropped), both in config order.

    Only `data.constant_features = "drop"` drops anything: "fail" never lets a constant
    feature past the checks and "allow" keeps it as an input. `df` is what `load_dataset`
    returned and passed `run_checks` (a column missing from it is not judged here).
    """
    features = list(data_cfg.features)
    if data_cfg.constant_features != "drop":
        return features, []
    dropped = [c for c in features if c in df.columns and _distinct(_as_numeric(df[c])[0]) <= 1]
    kept = [c for c in features if c not in dropped]
    if not kept:
        raise DataError(
            "every feature is constant: dropping them (data.constant_features = \"drop\")"
            " leaves the model no input",
            hint="add features that vary to data.features",
        )
    return kept, dropped


def _robust_z(x: np.ndarray) -> np.ndarray | None:
    """|x - median| / robust sd; None when the column has no spread at all."""
    med = float(np.median(x))
    dev = np.abs(x - med)
    scale = _MAD_TO_SD * float(np.median(dev))
    if scale == 0.0:
        scale = _MEANAD_TO_SD * float(np.mean(dev))
    if scale == 0.0:
        return None
    return dev / scale


def run_checks(df: pd.DataFrame, data_cfg: DataSection) -> CheckReport:
    """Apply every data rule from `data_cfg` to `df`; never raises for bad data, reports it."""
    c = _Collector()
    target = data_cfg.target
    classification = data_cfg.task == "classification"
    wanted = [*data_cfg.features, target]
    present = [col for col in wanted if col in df.columns]
    for col in wanted:
        if col not in df.columns:
            c.add("column_present", col, False, None, None, "configured column not in the dataset")

    rows = len(df)
    c.add(
        "min_rows",
        None,
        rows >= data_cfg.min_rows,
        rows,
        data_cfg.min_rows,
        f"{_n(rows, 'row')}"
        + ("" if rows >= data_cfg.min_rows else f", fewer than min_rows {data_cfg.min_rows}"),
    )

    numeric: dict[str, pd.Series] = {}
    for col in present:
        s = df[col]
        n_missing = int(s.isna().sum())
        frac = n_missing / rows if rows else 0.0
        ok = frac <= data_cfg.max_missing_fraction
        c.add(
            "missing",
            col,
            ok,
            frac,
            data_cfg.max_missing_fraction,
            f"{_n(n_missing, 'missing value')} ({frac:.1%})"
            + ("" if ok else f", above max_missing_fraction {_g(data_cfg.max_missing_fraction)}"),
        )

        label_target = classification and col == target
        num, bad = _as_numeric(s)
        if label_target and (bad or not pd.api.types.is_numeric_dtype(s)):
            continue  # string class labels: nothing numeric to check
        if not label_target:
            examples = ", ".join(repr(v) for v in s[s.notna() & num.isna()].unique()[:3])
            c.add(
                "non_numeric",
                col,
                bad == 0,
                bad,
                0,
                "all values numeric"
                if bad == 0
                else f"{_n(bad, 'non-numeric value')} (e.g. {examples})",
            )
        n_inf = int(np.isinf(num.to_numpy()).sum())
        c.add(
            "non_finite",
            col,
            n_inf == 0,
            n_inf,
            0,
            "no infinite values" if n_inf == 0 else f"{_n(n_inf, 'infinite value')} (±inf)",
        )
        numeric[col] = num

    for col, (lo, hi) in data_cfg.ranges.items():
        bounds = f"[{_g(lo)}, {_g(hi)}]"
        if col not in df.columns:
            c.add(
                "range",
                col,
                False,
                None,
                bounds,
                f"declared range {bounds} names a column not in the dataset",
            )
            continue
        num = numeric.get(col)
        if num is None:
            num, _ = _as_numeric(df[col])
        x = num.to_numpy()
        x = x[np.isfinite(x)]
        outside = int(((x < lo) | (x > hi)).sum())
        c.add(
            "range",
            col,
            outside == 0,
            outside,
            bounds,
            f"{_n(outside, 'value')} outside declared range {bounds}",
        )

    if present and rows:
        n_dup = int(df[present].duplicated().sum())
        frac = n_dup / rows
        ok = frac <= data_cfg.max_duplicate_fraction
        c.add(
            "duplicates",
            None,
            ok,
            frac,
            data_cfg.max_duplicate_fraction,
            f"{_n(n_dup, 'duplicate row')} ({frac:.1%})"
            + (
                ""
                if ok
                else f", above max_duplicate_fraction {_g(data_cfg.max_duplicate_fraction)}"
            ),
        )

    policy = data_cfg.constant_features
    checked = [col for col in data_cfg.features if col in numeric]
    all_constant = bool(checked) and all(_distinct(numeric[col]) <= 1 for col in checked)
    for col in checked:
        x = numeric[col].to_numpy()
        x = x[np.isfinite(x)]
        distinct = _distinct(numeric[col])
        ok, detail = _constant_verdict(distinct, policy, all_constant)
        c.add(
            "constant_feature", col, ok, distinct, 2, f"{_n(distinct, 'distinct value')}{detail}"
        )
        z = _robust_z(x) if x.size else None
        n_out = int((z > data_cfg.outlier_z).sum()) if z is not None else 0
        frac = n_out / x.size if x.size else 0.0
        ok = frac <= data_cfg.max_outlier_fraction
        c.add(
            "outliers",
            col,
            ok,
            frac,
            data_cfg.max_outlier_fraction,
            f"{_n(n_out, 'value')} ({frac:.1%}) beyond robust z {_g(data_cfg.outlier_z)}"
            + ("" if ok else f", above max_outlier_fraction {_g(data_cfg.max_outlier_fraction)}"),
        )

    if target in df.columns:
        labels = df[target].dropna()
        distinct = int(labels.nunique())
        c.add(
            "constant_target",
            target,
            distinct > 1,
            distinct,
            2,
            f"{_n(distinct, 'distinct value')}" + ("" if distinct > 1 else ": nothing to learn"),
        )
        if classification:
            counts = labels.value_counts(sort=False)
            for label, count in sorted(counts.items(), key=lambda kv: str(kv[0])):
                ok = int(count) >= data_cfg.min_class_samples
                c.add(
                    "min_class_samples",
                    target,
                    ok,
                    int(count),
                    data_cfg.min_class_samples,
                    f"class '{label}' has {_n(int(count), 'sample')}"
                    + (
                        "" if ok else f", fewer than min_class_samples {data_cfg.min_class_samples}"
                    ),
                )

    return CheckReport(rows=rows, results=c.results)
