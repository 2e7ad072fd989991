"""A short Markdown model card per registry version, rendered from its manifest."""

from __future__ import annotations

from typing import Any


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_model_card(m: dict[str, Any]) -> str:
    """Intended use, data, metrics (incl. the long-tail slice), gates and limitations."""
    metrics = m.get("metrics", {})
    task = m.get("task", "regression")
    lines = [
        f"# Model card: {m.get('config', {}).get('project', {}).get('name', 'model')} "
        f"{m.get('version')}",
        "",
        f"- Created: {m.get('created')} by tinyship {m.get('tinyship_version')}"
        f" (git {m.get('git_commit') or 'n/a'}); parent version: {m.get('parent') or 'none'}",
        f"- Task: {task}; target `{m.get('target')}` from {len(m.get('features', []))} features:"
        f" {', '.join(f'`{f}`' for f in m.get('features', []))}",
        f"- Model: {m['model']['type']}, int8 ({m['profile']} profile),"
        f" {m['model']['bytes']} bytes, arena {m['model']['arena_bytes']} bytes,"
        f" ops {', '.join(m['model']['ops'])}",
        "",
        "## Intended use",
        "",
        "On-device inference on a microcontroller running TensorFlow Lite Micro with the"
        f" `{m['profile']}` runtime profile, on inputs standardised with the recorded mean/std"
        " and quantized with the recorded input scale and zero point. Not for inputs outside"
        " the ranges seen in training.",
        "",
        "## Data",
        "",
        f"- File: `{m['data'].get('path')}`, {m['data'].get('rows')} rows,"
        f" SHA-256 `{m['data'].get('sha256')}`",
        f"- Held-out test rows: {metrics.get('test_rows')}",
        "",
        "## Metrics (held-out test set)",
        "",
        "| metric | float | int8 (TFLM) |",
        "| --- | --- | --- |",
    ]
    f32, i8 = metrics.get("float", {}), metrics.get("int8", {})
    for key in ("mae", "rmse", "r2", "accuracy", "macro_f1"):
        if key in i8:
            lines.append(f"| {key} | {_fmt(f32.get(key))} | {_fmt(i8.get(key))} |")
    tail_f, tail_i = f32.get("long_tail"), i8.get("long_tail")
    if tail_i:
        lines.append(
            f"| long-tail MAE ({tail_i['slice']}, {tail_i['rows']} rows) |"
            f" {_fmt(tail_f['mae'] if tail_f else None)} | {_fmt(tail_i['mae'])} |"
        )
    lines += [
        "",
        f"int8 vs float degradation: {_fmt(metrics.get('int8_degradation'))};"
        f" TFLite vs TFLM max difference: {metrics.get('parity_max_lsb')} LSB.",
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
        "- Trained on the data above only; accuracy under drift (new temperature regimes,"
        " chemistries, operating points) is unknown until checked with new data.",
        "- The long-tail slice is rare in training data; its error is reported separately"
        " and is usually higher than the overall error.",
        "- Device outputs equal the host TFLM reference only on boards with reference kernels;"
        " optimized kernels may differ by a few LSB (the HIL harness measures this).",
        "",
    ]
    return "\n".join(lines)
