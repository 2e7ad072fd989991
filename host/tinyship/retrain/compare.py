"""Champion vs challenger: a paired test on per-sample losses, size guards, a linear baseline.

Pure functions over arrays: no registry, no models. The retrain job computes predictions
of both models on the same rows and hands them here; the result says `better` or lists
exactly which condition failed, with its value and threshold.

Why Wilcoxon signed-rank rather than a paired t-test: the per-sample losses are absolute
errors (or log losses), which are non-negative and right-skewed, and their paired
differences are heavy-tailed: a handful of hard rows dominate the mean and the standard
deviation. The t-test assumes roughly normal differences and loses power on such tails;
the signed-rank test uses ranks, so a few extreme rows cannot decide it, and it keeps about
95 % of the t-test's efficiency when the differences are normal after all. It is one-sided
(`alternative="greater"` on champion loss − challenger loss): we only act when the
challenger is better.

The rank test answers "does the challenger win most rows?", not "is its mean loss lower?".
A challenger that wins many rows by a little and loses a few rows badly can pass it, so the
decision also requires the mean difference to favour the challenger and Cohen's d for
paired samples (mean difference / sd of differences) to exceed `min_effect`: significance
says the gain is real, d says it is big enough to be worth a reflash.

Zero differences (rows where both models have the same loss) use ``zero_method="pratt"``:
they are evidence of "no difference" that ``"wilcox"`` would throw away. Pratt keeps them in
the ranking and drops only their ranks, the conservative choice; it matters for a
warm-started challenger or int8 outputs on a coarse grid, where many rows tie exactly, and
for 0/1 loss, where most rows tie (both right or both wrong).

Classification loss: 1-D predictions are class labels and the loss is 0/1 (the test is then
a sign test on the rows where exactly one model is right, like McNemar's). 2-D predictions
of shape (rows, classes) are probabilities and the loss is the per-sample log loss
−log p(true class), clipped at `LOG_LOSS_EPS`: it uses the models' confidence, ties on
almost no rows, and so detects a smaller real improvement than 0/1 loss. Metrics
(accuracy, macro-F1) are computed from the arg-max in both cases.

SciPy and scikit-learn are imported inside the functions (scikit-learn is in the `ml`
extra), like `tinyship.train.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Probabilities are clipped to [LOG_LOSS_EPS, 1] before the log, so a confident wrong
#: prediction costs at most −log(1e-15) ≈ 34.5 instead of infinity.
LOG_LOSS_EPS = 1e-15

#: Keys `guards` reads from each model's measurements.
GUARD_KEYS = ("model_bytes", "arena_bytes", "latency_us")

TASKS = ("regression", "classification")

_TEST_NAME = "wilcoxon signed-rank, one-sided (champion loss - challenger loss > 0), pratt"


@dataclass(frozen=True)
class PairedTest:
    """The paired test of champion loss − challenger loss on one set of rows."""

    #: Rows compared.
    n: int
    #: Rows where the two losses differ (the ones the rank test looks at).
    n_nonzero: int
    mean_loss_champion: float
    mean_loss_challenger: float
    #: Mean of champion loss − challenger loss: > 0 means the challenger is better.
    mean_difference: float
    #: Wilcoxon statistic as SciPy reports it (sum of positive ranks, Pratt ranking);
    #: None when every difference is zero (the test is undefined there).
    statistic: float | None
    #: One-sided p-value; 1.0 when every difference is zero.
    p_value: float
    #: Cohen's d for paired samples: mean difference / sd of differences (ddof=1).
    #: ±inf when every row differs by the same non-zero amount, None with fewer than 2 rows.
    cohens_d: float | None
    #: Matched-pairs rank-biserial correlation (R+ − R−) / (R+ + R−), the non-zero
    #: differences ranked by size among themselves (Kerby 2014); in [−1, 1], > 0 favours
    #: the challenger, 0 when every difference is zero.
    rank_biserial: float


@dataclass(frozen=True)
class SliceResult:
    """Both models' metrics on one slice, and the paired test when the slice is big enough."""

    name: str
    n: int
    metrics_champion: dict[str, float]
    metrics_challenger: dict[str, float]
    #: None when the slice has fewer than `min_samples` rows: metrics only, no test.
    paired: PairedTest | None
    #: Why there is no test ("n = 120 < 500: metrics only, no test"), else "".
    note: str = ""


@dataclass(frozen=True)
class Comparison:
    """Champion vs challenger on the same rows: overall test, metrics, slices, decision."""

    task: str
    #: "absolute_error", "zero_one" or "log_loss".
    loss: str
    #: Name of the test and its options.
    test: str
    n: int
    metrics_champion: dict[str, float]
    metrics_challenger: dict[str, float]
    #: The overall test; computed even when n < min_samples, for the report.
    paired: PairedTest
    slices: list[SliceResult]
    alpha: float
    min_effect: float
    min_samples: int
    #: True only when n ≥ min_samples, the mean difference favours the challenger,
    #: p < alpha and d > min_effect.
    better: bool
    #: Every failed condition with its value and threshold; empty when `better`.
    reasons: list[str] = field(default_factory=list)

    @property
    def p_value(self) -> float:
        """The overall one-sided p-value."""
        return self.paired.p_value

    @property
    def effect_size(self) -> float | None:
        """The overall Cohen's d for paired samples."""
        return self.paired.cohens_d

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only; non-finite floats (an infinite d) become None. Top-level
        `p_value` and `effect_size` repeat the overall test's, for summaries and lineage."""
        doc = asdict(self)
        doc["p_value"], doc["effect_size"] = self.p_value, self.effect_size
        return _json_safe(doc)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class GuardResult:
    """One size or speed guard: the challenger's value against its limit."""

    name: str
    #: The challenger's value; None when not measured.
    value: float | int | None
    #: The limit it must not exceed; None when there is none or it cannot be derived.
    limit: float | int | None
    #: False only for a measured value over its limit; "not measured" is not a failure.
    passed: bool
    #: False when the challenger's value (or, for latency, the champion's) is missing.
    measured: bool
    champion: float | int | None
    #: Challenger / champion − 1 (0.12 = 12 % larger or slower); None if either is missing.
    growth: float | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Decision:
    """Promote the challenger or keep the champion, and why."""

    promote: bool
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reasons": list(self.reasons)}


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


# --- losses and metrics -----------------------------------------------------------------


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _labels(a: np.ndarray, name: str, n_classes: int) -> np.ndarray:
    arr = np.asarray(a).reshape(-1)
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"{name}: class labels must be whole numbers")
    out = arr.astype(np.int64)
    if out.size and (out.min() < 0 or (n_classes > 0 and out.max() >= n_classes)):
        raise ValueError(f"{name}: labels outside [0, {n_classes}) for n_classes={n_classes}")
    return out


def _losses(
    task: str, y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, n_classes: int
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(loss name, y, label/value predictions a and b, per-sample losses a and b)."""
    a, b = np.asarray(pred_a), np.asarray(pred_b)
    if task == "regression":
        yt = np.asarray(y, dtype=np.float64).reshape(-1)
        pa = a.astype(np.float64).reshape(-1)
        pb = b.astype(np.float64).reshape(-1)
        if not (yt.size == pa.size == pb.size) or yt.size == 0:
            raise ValueError(f"need equal non-empty arrays, got {yt.size}, {pa.size}, {pb.size}")
        return "absolute_error", yt, pa, pb, np.abs(yt - pa), np.abs(yt - pb)
    yl = _labels(y, "y", n_classes)
    probs = a.ndim == 2 and a.shape[1] > 1
    if probs != (b.ndim == 2 and b.shape[1] > 1):
        raise ValueError("give both models' predictions as labels or both as probabilities")
    if probs:
        if a.shape != b.shape or a.shape[0] != yl.size or yl.size == 0:
            raise ValueError(f"need probabilities of shape ({yl.size}, classes), got "
                             f"{a.shape} and {b.shape}")
        if n_classes > 0 and a.shape[1] != n_classes:
            raise ValueError(f"probabilities have {a.shape[1]} columns, n_classes={n_classes}")
        if yl.max() >= a.shape[1]:
            raise ValueError(f"label {int(yl.max())} has no probability column")
        rows = np.arange(yl.size)
        pa_f, pb_f = a.astype(np.float64), b.astype(np.float64)
        la = -np.log(np.clip(pa_f[rows, yl], LOG_LOSS_EPS, 1.0))
        lb = -np.log(np.clip(pb_f[rows, yl], LOG_LOSS_EPS, 1.0))
        return ("log_loss", yl, np.argmax(pa_f, axis=1), np.argmax(pb_f, axis=1), la, lb)
    la_l, lb_l = _labels(a, "pred_champion", n_classes), _labels(b, "pred_challenger", n_classes)
    if not (yl.size == la_l.size == lb_l.size) or yl.size == 0:
        raise ValueError(f"need equal non-empty arrays, got {yl.size}, {la_l.size}, {lb_l.size}")
    return ("zero_one", yl, la_l, lb_l,
            (la_l != yl).astype(np.float64), (lb_l != yl).astype(np.float64))


def _metrics(
    task: str, y: np.ndarray, pred: np.ndarray, labels: np.ndarray | None = None
) -> dict[str, float]:
    """MAE and RMSE, or accuracy and macro-F1 over `labels` (scikit-learn).

    Pass the same `labels` for both models (the classes present in y or either prediction),
    so their macro-F1 averages over the same classes.
    """
    from sklearn import metrics

    if y.size == 0:
        return {}
    if task == "regression":
        return {"mae": float(metrics.mean_absolute_error(y, pred)),
                "rmse": float(metrics.root_mean_squared_error(y, pred))}
    if labels is None:
        labels = np.union1d(y, pred)
    return {"accuracy": float(metrics.accuracy_score(y, pred)),
            "macro_f1": float(metrics.f1_score(y, pred, labels=labels, average="macro",
                                               zero_division=0.0))}


def _metric_pair(
    task: str, y: np.ndarray, pa: np.ndarray, pb: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    labels = np.union1d(np.union1d(y, pa), pb) if task == "classification" else None
    return _metrics(task, y, pa, labels), _metrics(task, y, pb, labels)


# --- the paired test --------------------------------------------------------------------


def cohens_d_paired(diff: np.ndarray) -> float | None:
    """Mean / sd (ddof=1) of paired differences; 0 if all are zero, ±inf if all are equal
    and non-zero, None with fewer than 2 rows (no sd)."""
    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    if d.size < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    return mean / sd


def rank_biserial(diff: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of the non-zero differences (average ranks
    for ties); 0 when every difference is zero."""
    from scipy.stats import rankdata

    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    d = d[d != 0.0]
    if d.size == 0:
        return 0.0
    ranks = rankdata(np.abs(d))
    total = float(ranks.sum())
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / total)


def paired_test(loss_champion: np.ndarray, loss_challenger: np.ndarray) -> PairedTest:
    """One-sided Wilcoxon signed-rank (Pratt zeros) on champion − challenger losses, with
    Cohen's d and the rank-biserial correlation. All-zero differences: p = 1, no statistic."""
    from scipy.stats import wilcoxon

    la = np.asarray(loss_champion, dtype=np.float64).reshape(-1)
    lb = np.asarray(loss_challenger, dtype=np.float64).reshape(-1)
    if la.shape != lb.shape or la.size == 0:
        raise ValueError(f"need equal non-empty loss arrays, got {la.shape} and {lb.shape}")
    diff = la - lb
    nonzero = int(np.count_nonzero(diff))
    statistic: float | None = None
    p = 1.0
    if nonzero:
        res = wilcoxon(diff, zero_method="pratt", alternative="greater")
        statistic, p = float(res.statistic), float(res.pvalue)
        if not math.isfinite(p):  # not expected with a non-zero difference; stay safe
            p = 1.0
    return PairedTest(
        n=int(diff.size), n_nonzero=nonzero,
        mean_loss_champion=float(la.mean()), mean_loss_challenger=float(lb.mean()),
        mean_difference=float(diff.mean()), statistic=statistic, p_value=p,
        cohens_d=cohens_d_paired(diff), rank_biserial=rank_biserial(diff))


_LOSS_TEXT = {"absolute_error": "absolute error", "zero_one": "0/1 loss", "log_loss": "log loss"}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _failed_conditions(
    t: PairedTest, loss: str, *, alpha: float, min_effect: float, min_samples: int
) -> list[str]:
    reasons: list[str] = []
    loss = _LOSS_TEXT.get(loss, loss)
    if t.n < min_samples:
        reasons.append(f"n = {t.n} < {min_samples}")
    if t.n_nonzero == 0:
        reasons.append(f"no difference: both models have the same {loss} on all {t.n} rows")
    elif t.mean_difference < 0:
        reasons.append(f"challenger worse: mean {loss} {_fmt(t.mean_loss_challenger)} > "
                       f"champion's {_fmt(t.mean_loss_champion)}")
    elif t.mean_difference == 0:
        reasons.append(f"no difference in mean {loss} ({_fmt(t.mean_loss_champion)} for both)")
    if not t.p_value < alpha:
        reasons.append(f"p = {_fmt(t.p_value)} ≥ {alpha:g}")
    if t.cohens_d is None:
        reasons.append(f"d undefined: {t.n} row(s), need 2 for a standard deviation")
    elif not t.cohens_d > min_effect:
        reasons.append(f"d = {_fmt(t.cohens_d)} ≤ {min_effect:g}")
    return reasons


def compare(
    task: str,
    y: np.ndarray,
    pred_champion: np.ndarray,
    pred_challenger: np.ndarray,
    *,
    slices: Mapping[str, np.ndarray] | None = None,
    n_classes: int = 0,
    alpha: float = 0.05,
    min_effect: float = 0.2,
    min_samples: int = 500,
) -> Comparison:
    """Compare two models' predictions on the same rows, overall and per slice.

    Regression predictions are values; classification predictions are labels (0/1 loss) or
    probabilities of shape (rows, classes) (log loss). Each slice is a boolean mask over the
    rows; a slice with fewer than `min_samples` rows gets metrics but no test. Only the
    overall result decides `better`; slices are reported.
    """
    _check_task(task)
    loss, yv, pa, pb, la, lb = _losses(task, y, pred_champion, pred_challenger, n_classes)
    overall = paired_test(la, lb)
    m_a, m_b = _metric_pair(task, yv, pa, pb)

    slice_results: list[SliceResult] = []
    for name, mask_in in (slices or {}).items():
        mask = np.asarray(mask_in).reshape(-1)
        if mask.dtype != np.bool_ or mask.size != yv.size:
            raise ValueError(f"slice {name!r}: need a boolean mask of {yv.size} rows, got "
                             f"dtype {mask.dtype} and {mask.size} rows")
        n = int(mask.sum())
        sa, sb = _metric_pair(task, yv[mask], pa[mask], pb[mask])
        if n < min_samples:
            slice_results.append(SliceResult(
                name, n, sa, sb, None, f"n = {n} < {min_samples}: metrics only, no test"))
        else:
            slice_results.append(SliceResult(name, n, sa, sb, paired_test(la[mask], lb[mask])))

    reasons = _failed_conditions(overall, loss, alpha=alpha, min_effect=min_effect,
                                 min_samples=min_samples)
    return Comparison(
        task=task, loss=loss, test=_TEST_NAME, n=overall.n,
        metrics_champion=m_a, metrics_challenger=m_b, paired=overall, slices=slice_results,
        alpha=alpha, min_effect=min_effect, min_samples=min_samples,
        better=not reasons, reasons=reasons)


# --- guards -----------------------------------------------------------------------------


def _num(m: Mapping[str, float | int | None], key: str) -> float | int | None:
    v = m.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return v


def _growth(champion: float | int | None, challenger: float | int | None) -> float | None:
    if champion is None or challenger is None or champion == 0:
        return None
    return float(challenger) / float(champion) - 1.0


def _growth_text(g: float | None) -> str:
    return "growth unknown" if g is None else f"growth {g:+.1%} vs champion"


def guards(
    champion: Mapping[str, float | int | None],
    challenger: Mapping[str, float | int | None],
    *,
    latency_ratio: float = 1.2,
    max_model_bytes: int | None = None,
    max_arena_bytes: int | None = None,
) -> list[GuardResult]:
    """Model bytes, arena bytes and device latency (`GUARD_KEYS`) of the challenger.

    Bytes must fit the board's limits (`max_model_bytes`, `max_arena_bytes`; without one the
    guard passes and only reports growth). Latency must be ≤ `latency_ratio` × the
    champion's, measured on the same rig. A missing value is reported "not measured" and
    does not fail the guard: the HIL rig may not have run yet, and `decide` names it.
    """
    out: list[GuardResult] = []
    for key, limit in (("model_bytes", max_model_bytes), ("arena_bytes", max_arena_bytes)):
        ch, cv = _num(champion, key), _num(challenger, key)
        g = _growth(ch, cv)
        if cv is None:
            out.append(GuardResult(key, None, limit, True, False, ch, None,
                                   "not measured for the challenger (not counted as a failure)"))
        elif limit is None:
            out.append(GuardResult(key, cv, None, True, True, ch, g,
                                   f"no limit given; {_growth_text(g)}"))
        else:
            ok = cv <= limit
            out.append(GuardResult(key, cv, limit, ok, True, ch, g,
                                   f"{cv} {'≤' if ok else '>'} {limit}; {_growth_text(g)}"))

    ch, cv = _num(champion, "latency_us"), _num(challenger, "latency_us")
    g = _growth(ch, cv)
    if cv is None or ch is None:
        who = " and ".join(w for w, v in (("challenger", cv), ("champion", ch)) if v is None)
        out.append(GuardResult("latency_us", cv, None, True, False, ch, g,
                               f"not measured for the {who} (not counted as a failure)"))
    else:
        limit_f = latency_ratio * float(ch)
        ok = float(cv) <= limit_f
        out.append(GuardResult(
            "latency_us", cv, limit_f, ok, True, ch, g,
            f"{cv:g} {'≤' if ok else '>'} {limit_f:g} ({latency_ratio:g} × champion {ch:g}); "
            f"{_growth_text(g)}"))
    return out


# --- baseline and decision --------------------------------------------------------------


def linear_baseline(
    task: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int = 0,
) -> dict[str, float]:
    """Test metrics of a standardised ridge regression or logistic regression fitted on the
    training rows, reported beside both models so a network that is no better than a linear
    model is visible. Deterministic (closed-form ridge, L-BFGS from zero)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check_task(task)
    xtr = np.asarray(x_train, dtype=np.float64)
    xte = np.asarray(x_test, dtype=np.float64)
    xtr = xtr.reshape(-1, 1) if xtr.ndim == 1 else xtr
    xte = xte.reshape(-1, 1) if xte.ndim == 1 else xte
    if xtr.shape[0] != np.asarray(y_train).reshape(-1).size or xtr.shape[0] == 0:
        raise ValueError(f"x_train has {xtr.shape[0]} rows, y_train "
                         f"{np.asarray(y_train).size}")
    if xte.shape[0] != np.asarray(y_test).reshape(-1).size or xte.shape[0] == 0:
        raise ValueError(f"x_test has {xte.shape[0]} rows, y_test {np.asarray(y_test).size}")
    if task == "regression":
        ytr = np.asarray(y_train, dtype=np.float64).reshape(-1)
        yte = np.asarray(y_test, dtype=np.float64).reshape(-1)
        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    else:
        ytr, yte = _labels(y_train, "y_train", n_classes), _labels(y_test, "y_test", n_classes)
        model = make_pipeline(StandardScaler(),
                              LogisticRegression(max_iter=5000, random_state=0))
    model.fit(xtr, ytr)
    pred = np.asarray(model.predict(xte))
    return _metrics(task, yte, pred.reshape(-1))


def decide(comparison: Comparison, guard_results: list[GuardResult]) -> Decision:
    """Promote only when the comparison says `better` and no measured guard failed.

    Reasons list every failure; a promotion's reasons give the evidence and name any
    guard that was not measured, so nobody mistakes "not measured" for "passed".
    """
    failed = [f"{g.name}: {g.detail}" for g in guard_results if not g.passed]
    unmeasured = [f"{g.name}: {g.detail}" for g in guard_results if not g.measured]
    if comparison.better and not failed:
        t = comparison.paired
        d = "undefined" if t.cohens_d is None else _fmt(t.cohens_d)
        return Decision(True, [
            f"challenger better: n = {t.n} ≥ {comparison.min_samples}, "
            f"p = {_fmt(t.p_value)} < {comparison.alpha:g}, d = {d} > "
            f"{comparison.min_effect:g}", *unmeasured])
    return Decision(False, [*comparison.reasons, *failed, *unmeasured])
