"""A short Markdown model card per registry version, rendered from its manifest.

Every statement about what the model is for and where it stops being valid comes from the
manifest and the config recorded in it (task, target, features, classes, group column,
declared ranges, long-tail slice, runtime profile), so a card fits whatever dataset the
project trains on, not only the bundled example.
"""

from __future__ import annotations

from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _codes(names: list[Any]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _bounds(lo: Any, hi: Any) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _tail_slice(target: str, tail_cfg: dict[str, Any]) -> str:
    """The configured long-tail slice (`data.long_tail`) in words."""
    bounds = tail_cfg.get("range")
    if bounds is not None:
        lo, hi = bounds
        if lo is None:
            return f"`{target}` <= {_fmt(hi)}"
        if hi is None:
            return f"`{target}` >= {_fmt(lo)}"
        return f"`{target}` in {_bounds(lo, hi)}"
    share = 1 - float(tail_cfg.get("quantile", 0.9))
    side = "top" if tail_cfg.get("side", "upper") == "upper" else "bottom"
    return f"the {side} {share:.0%} of `{target}`"


def _inputs(m: dict[str, Any]) -> list[str]:
    """The model's input features: the manifest's features minus any dropped constant ones."""
    dropped = set(m.get("dropped_features") or [])
    return [f for f in m.get("features", []) if f not in dropped]


def _intended_use(m: dict[str, Any], data_cfg: dict[str, Any], board: str | None) -> list[str]:
    task, target = m.get("task", "regression"), m.get("target")
    features = _inputs(m)
    classes: list[str] = m.get("classes") or []
    if task == "classification":
        classes_above = _n(len(classes), "class", "classes")
        what = f"Classifies `{target}` into one of the {classes_above} listed above"
    else:
        what = f"Estimates `{target}`"
    on_board = f" within the budgets of board `{board}`" if board else ""
    lines = [
        f"{what} from the {_n(len(features), 'input feature')} listed above, on a microcontroller"
        f" running TensorFlow Lite Micro with the `{m.get('profile')}` target-runtime"
        f" profile{on_board}. Inputs are standardised with the recorded mean/std and quantized"
        " with the recorded input scale and zero point (the exported firmware does both).",
        "",
    ]
    group = data_cfg.get("group")
    if group:
        lines.append(
            f"- Generalises over `{group}`: the held-out test set holds whole `{group}` values"
            " never seen in training, so its metrics estimate performance on new ones."
        )
    else:
        lines.append(
            "- The test set is a random sample of rows (no `data.group`): its metrics estimate"
            " performance on new rows like the training rows."
        )
    ranges: dict[str, Any] = data_cfg.get("ranges") or {}
    inputs = {c: r for c, r in ranges.items() if c in features}
    others = {c: r for c, r in ranges.items() if c not in features}
    if inputs:
        lines.append(
            "- Out of scope: inputs outside the declared ranges (`data.ranges`): "
            + ", ".join(f"`{c}` {_bounds(*r)}" for c, r in inputs.items())
            + "."
        )
    else:
        lines.append(
            "- No input ranges are declared (`data.ranges`): inputs unlike the training data"
            " are out of scope."
        )
    if others:
        lines.append(
            "- Other declared ranges: "
            + ", ".join(f"`{c}` {_bounds(*r)}" for c, r in others.items())
            + "."
        )
    return lines


def _limitations(
    m: dict[str, Any], data_cfg: dict[str, Any], tail: dict[str, Any] | None
) -> list[str]:
    task, target = m.get("task", "regression"), m.get("target")
    classes: list[str] = m.get("classes") or []
    dropped: list[str] = m.get("dropped_features") or []
    lines = [
        f"- Trained and tested on `{m.get('data', {}).get('path')}` only; accuracy on data"
        " from other sources or conditions (drift) is unknown until checked with new data.",
    ]
    group = data_cfg.get("group")
    if group:
        lines.append(
            f"- The test set measures generalisation to unseen `{group}` values only; other"
            " shifts in the data are not covered by it."
        )
    else:
        lines.append(
            "- Rows are split at random: rows from one source can land in both training and"
            " test set, so the test metrics may overstate accuracy on a new source"
            " (`data.group` keeps a source's rows together)."
        )
    if task == "classification":
        lines.append(
            f"- Knows only the {_n(len(classes), 'class', 'classes')} seen in training"
            f" ({_codes(classes)});"
            " an input of any other kind is still assigned one of them."
        )
    else:
        configured = _tail_slice(str(target), data_cfg.get("long_tail") or {})
        measured = f" (test set: {tail['slice']}, {tail['rows']} rows)" if tail else ""
        lines.append(
            f"- The long-tail slice, {configured}{measured}, is rare in the training data; its"
            " error is reported separately and is usually higher than the overall error."
        )
    if dropped:
        one = len(dropped) == 1
        lines.append(
            f"- {_codes(dropped)} had a single value in the whole dataset, so"
            f" {'it is not a model input' if one else 'they are not model inputs'}"
            " (`data.constant_features = \"drop\"`): the model cannot respond if"
            f" {'it varies' if one else 'they vary'} in use."
        )
    lines.append(
        "- Device outputs equal the host TFLM reference only on boards with reference kernels;"
        " optimized kernels may differ by a few LSB (the HIL harness measures this)."
    )
    return lines


def render_model_card(m: dict[str, Any]) -> str:
    """Intended use, data, metrics (incl. the long-tail slice), gates and limitations."""
    config: dict[str, Any] = m.get("config") or {}
    data_cfg: dict[str, Any] = config.get("data") or {}
    board = (config.get("board") or {}).get("name")
    metrics = m.get("metrics", {})
    task = m.get("task", "regression")
    features = _inputs(m)
    f32, i8 = metrics.get("float", {}), metrics.get("int8", {})
    tail_f, tail_i = f32.get("long_tail"), i8.get("long_tail")
    lines = [
        f"# Model card: {config.get('project', {}).get('name', 'model')} {m.get('version')}",
        "",
        f"- Created: {m.get('created')} by tinyship {m.get('tinyship_version')}"
        f" (git {m.get('git_commit') or 'n/a'}); parent version: {m.get('parent') or 'none'}",
        f"- Task: {task}; target `{m.get('target')}` from {_n(len(features), 'feature')}:"
        f" {_codes(features)}",
    ]
    snapshot = (m.get("data") or {}).get("snapshot")
    if snapshot:
        lines.append(f"- Data snapshot: {snapshot} (`tinyship data snapshots`), SHA-256 "
                     f"{str((m.get('data') or {}).get('sha256'))[:12]}…")
    lineage = m.get("lineage")
    if lineage:  # made by the retrain job
        cmp_ = lineage.get("comparison") or {}
        lines.append(
            f"- Lineage: retrained from {lineage.get('parent') or 'nothing'} on data snapshot "
            f"{lineage.get('data_snapshot')} (run {lineage.get('run_id')}); against its "
            f"parent on the same held-out rows: p = {cmp_.get('p_value')}, effect size "
            f"d = {cmp_.get('effect_size')}, n = {cmp_.get('n')}")
    if task == "classification":
        lines.append(f"- Classes: {_codes(m.get('classes') or [])}")
    if m.get("dropped_features"):
        lines.append(f"- Dropped constant features: {_codes(m['dropped_features'])}")
    lines += [
        f"- Model: {m['model']['type']}, int8 ({m['profile']} profile),"
        f" {m['model']['bytes']} bytes, arena {m['model']['arena_bytes']} bytes,"
        f" ops {', '.join(m['model']['ops'])}",
        "",
        "## Intended use",
        "",
        *_intended_use(m, data_cfg, board),
        "",
        "## Data",
        "",
        f"- File: `{m['data'].get('path')}`, {m['data'].get('rows')} rows,"
        f" SHA-256 `{m['data'].get('sha256')}`",
        f"- Held-out test rows: {metrics.get('test_rows')}",
        "",
        "## Metrics (held-out test set)",
        "",
        "| metric | float | int8 (TFLM) | trivial baseline |",
        "| --- | --- | --- | --- |",
    ]
    base = metrics.get("baseline", {})
    for key in ("mae", "rmse", "r2", "accuracy", "macro_f1"):
        if key in i8:
            lines.append(f"| {key} | {_fmt(f32.get(key))} | {_fmt(i8.get(key))} |"
                         f" {_fmt(base.get(key, 'n/a'))} |")
    if tail_i:
        lines.append(
            f"| long-tail MAE ({tail_i['slice']}, {tail_i['rows']} rows) |"
            f" {_fmt(tail_f['mae'] if tail_f else None)} | {_fmt(tail_i['mae'])} | |"
        )
    lines += [
        "",
        (f"Trivial baseline: scikit-learn Dummy ({base['strategy']}) fitted on the training"
         " split. " if base else "")
        + f"int8 vs float degradation: {_fmt(metrics.get('int8_degradation'))};"
        f" TFLite vs TFLM: {metrics.get('parity_max_lsb')} LSB per operator"
        + (f", {metrics['parity']['output_max_lsb']} LSB end to end"
           if "parity" in metrics else "")
        + (f"; one int8 output step is {_fmt(metrics['output_step'])} in target units"
           if "output_step" in metrics else "") + ".",
        "",
        "## Quality gates",
        "",
        "| gate | value | threshold | passed |",
        "| --- | --- | --- | --- |",
    ]
    for g in m.get("gates", []):
        lines.append(
            f"| {g['name']} | {_fmt(g['value'])} | {g['op']} {_fmt(g['threshold'])} |"
            f" {'yes' if g['passed'] else 'NO'} |"
        )
    lines += [
        "",
        "## Limitations",
        "",
        *_limitations(m, data_cfg, tail_i if task == "regression" else None),
        "",
    ]
    return "\n".join(lines)
