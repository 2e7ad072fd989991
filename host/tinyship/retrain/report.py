"""The retrain job's report: `report.json` (everything the run decided, for scripts) and
`report.md` (the same for the engineer who reads it in the morning), with the drift chart
(`drift.png`, written by the drift step) and the champion-vs-challenger chart."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from tinyship.atomic import write_text_atomic
from tinyship.retrain.job import RetrainResult

_HEADLINES = {
    "deployed": "promoted and deployed",
    "nothing_due": "nothing due: production kept, no trigger fired",
    "not_better": "not better: the champion stays in production",
    "deployed_with_failures": "promoted; some boards were rolled back (see the fleet table)",
    "refused": "refused: production and the boards unchanged",
    "awaiting_approval": "challenger ready, awaiting approval (production is held)",
}


def write_report(r: RetrainResult, out: Path) -> None:
    """`report.json` and `report.md` in `out` (written atomically)."""
    doc = r.to_dict()
    write_text_atomic(out / "report.json", json.dumps(doc, indent=2, default=str) + "\n")
    if r.comparison:
        with contextlib.suppress(ImportError):  # matplotlib is an optional extra
            _comparison_chart(r.comparison, out / "comparison.png")
    write_text_atomic(out / "report.md", render(r, out))


def render(r: RetrainResult, out: Path) -> str:
    lines = [f"# Retrain run {r.run_id}", "",
             f"**Outcome: {_HEADLINES.get(r.outcome, r.outcome)}** (exit {r.exit_code})", ""]
    lines += [f"- {x}" for x in r.reasons] + [""]
    lines += [f"- champion (production before the run): {r.champion or '—'}",
              f"- challenger: {r.challenger or '— (not registered)'}"]
    if r.snapshot:
        s = r.snapshot
        lines.append(f"- data snapshot: {s.get('id')} ({s.get('rows_total')} rows, "
                     f"{s.get('rows_new')} new; sha256 {str(s.get('sha256'))[:12]}…)")
    lines.append("")
    if r.triggers:
        lines += ["## Triggers", "", "| trigger | fired | value | threshold | detail |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {t['name']} | {'**yes**' if t['fired'] else 'no'} | {t['value']} | "
                  f"{t['threshold']} | {t['detail']} |" for t in r.triggers]
        lines.append("")
    if r.drift and r.drift.get("features"):
        lines += ["## Drift", "", "| feature | PSI | band | KS | p |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {f['feature']} | {_num(f.get('psi'), '.3f')} | {f.get('band')} | "
                  f"{_num(f.get('ks_stat'), '.3f')} | {_num(f.get('ks_p'), '.3g')} |"
                  for f in r.drift["features"]]
        if (out / "drift.png").is_file():
            lines += ["", "![drift](drift.png)"]
        lines.append("")
    if r.comparison:
        lines += ["## Champion vs challenger", "", "```json",
                  json.dumps(_short(r.comparison), indent=2, default=str), "```"]
        if r.baseline:
            lines += ["", f"Linear baseline (scikit-learn) on the same split: "
                          f"{json.dumps(r.baseline, default=str)}"]
        if r.guards:
            lines += ["", "| guard | value | limit | passed |", "| --- | --- | --- | --- |"]
            lines += [f"| {g.get('name')} | {g.get('value')} | {g.get('limit')} | "
                      f"{g.get('passed')} |" for g in r.guards]
        if (out / "comparison.png").is_file():
            lines += ["", "![comparison](comparison.png)"]
        lines.append("")
    if r.hil:
        lines += ["## HIL", "", f"{r.hil['version']}: {'passed' if r.hil['passed'] else 'FAILED'}"
                  f", device latency {r.hil.get('latency_us')}", ""]
    if r.fleet:
        lines += ["## Fleet", "", "| board | device | from | to | result | failed step | now |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for b in r.fleet.get("boards", []):
            o = b.get("outcome", b)
            now = (o.get("board") or {}).get("model_version")
            lines.append(f"| {o.get('label') or ''} | {o.get('url')} | {o.get('from_version')} "
                         f"| {o.get('to_version')} | {o.get('result')} | "
                         f"{o.get('failed_step') or ''} | {now} |")
        lines.append("")
    lines += [f"Audit trail: `tinyship audit --run {r.run_id}`", ""]
    return "\n".join(lines)


def _num(v: Any, fmt: str) -> str:
    """A number, or a dash for a figure not computed (too few rows)."""
    return "—" if v is None else format(float(v), fmt)


def _short(comparison: dict[str, Any]) -> dict[str, Any]:
    """The comparison without per-sample arrays."""
    return {k: v for k, v in comparison.items() if not isinstance(v, list) or len(v) < 20}


def _comparison_chart(comparison: dict[str, Any], path: Path) -> None:
    """Champion vs challenger metric, overall and per slice (bar chart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("overall", comparison.get("metrics_champion", {}),
             comparison.get("metrics_challenger", {}))]
    rows += [(str(s.get("name")), s.get("metrics_champion", {}),
              s.get("metrics_challenger", {})) for s in comparison.get("slices") or []]
    metric = "mae" if "mae" in rows[0][1] else next(iter(rows[0][1]), None)
    if metric is None:
        return
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [float(r[1].get(metric, 0)) for r in rows], 0.4,
            label="champion")
    ax.barh([y + 0.2 for y in ys], [float(r[2].get(metric, 0)) for r in rows], 0.4,
            label="challenger")
    ax.set_yticks(list(ys), [r[0] for r in rows])
    ax.set_xlabel(metric)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
