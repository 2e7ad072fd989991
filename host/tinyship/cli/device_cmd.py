"""`tinyship device`: technician commands over serial (version, statistics, link check).

No TensorFlow and no registry needed, so they start fast and work offline on a laptop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tinyship.cli._common import echo_json, json_option, project_context, registry_options

device_option = click.option(
    "--device", "url", required=True, metavar="URL",
    help="Serial port or pyserial URL (/dev/ttyACM0, COM5, socket://host:port).")
baud_option = click.option("--baud", type=click.IntRange(min=1), default=115200,
                           show_default=True, help="Line rate.")


def _open(url: str, baud: int) -> Any:
    from tinyship.device.client import DeviceClient

    return DeviceClient.open(url, baud=baud)


@click.group()
def device() -> None:
    """Talk to a board: version and model, statistics, link check."""


@device.command("info")
@device_option
@baud_option
@click.option("--expect", "expect", default=None, metavar="VERSION",
              help="Also check the board runs this registry version or alias (exit 9 if not).")
@registry_options
@json_option
def info_cmd(url: str, baud: int, expect: str | None, config_path: Path | None,
             registry_dir: Path | None, as_json: bool) -> None:
    """Print what the board reports: firmware and model version, SHA-256, self-test, uptime."""
    from tinyship.errors import RegistryError, ValidationFailed

    with _open(url, baud) as client:
        info = client.hello().to_dict()
    problems: list[str] = []
    expected: dict[str, Any] | None = None
    if expect is not None:
        reg, _ = project_context(config_path, registry_dir)
        version = reg.resolve(expect)
        try:
            sha = str(reg.manifest(version)["model"]["sha256"])
        except (KeyError, TypeError):
            raise RegistryError(f"{version}/manifest.json lacks model.sha256") from None
        expected = {"version": version, "sha256": sha}
        if info.get("model_version") != version:
            problems.append(f"board runs model {info.get('model_version')}, expected {version}")
        if info.get("model_sha256") != sha:
            problems.append("model SHA-256 on the board differs from the registry's")
    if as_json:
        echo_json({"device": info, "expected": expected, "ok": not problems,
                   "problems": problems})
    else:
        keys = ("board", "firmware_version", "model_version", "model_sha256", "profile",
                "model_crc_check", "protocol_version", "boot_count", "reset_reason_name",
                "uptime_us", "arena_used", "arena_size", "git_commit", "build_time")
        for k in keys:
            if info.get(k) is not None:
                click.echo(f"{k:18} {info[k]}")
        link = info.get("link") or {}
        if link:
            extra = (f" {link.get('baud')} baud, {link.get('rx_window')}-byte receive window"
                     if link.get("kind_name") == "uart" else "")
            click.echo(f"{'link':18} {link.get('kind_name')}{extra}")
        st = info.get("self_test") or {}
        if st:
            click.echo(f"{'self_test':18} {st.get('status_name')} ({st.get('vectors')} vectors,"
                       f" max diff {st.get('max_diff_lsb')} LSB)")
        if expected:
            click.echo("matches registry " + expected["version"] if not problems
                       else "MISMATCH: " + "; ".join(problems))
    if problems:
        raise ValidationFailed("; ".join(problems))


@device.command("stats")
@device_option
@baud_option
@click.option("--reset", is_flag=True, help="Zero the counters after reading them.")
@json_option
def stats_cmd(url: str, baud: int, reset: bool, as_json: bool) -> None:
    """Inference count, latency min/mean/max and error counters since boot (or last reset)."""
    with _open(url, baud) as client:
        stats = client.stats().to_dict()
        if reset:
            client.reset_stats()
    if as_json:
        echo_json(stats)
        return
    click.echo(f"inferences {stats['inference_count']}, latency min/mean/max "
               f"{stats['latency_min_us']}/{stats['latency_mean_us']}/{stats['latency_max_us']}"
               f" us, frames ok {stats['frames_ok']}")
    for name, count in stats["errors"].items():
        click.echo(f"  {name}: {count}")


@device.command("ping")
@device_option
@baud_option
@click.option("--count", type=click.IntRange(1, 10_000), default=5, show_default=True)
@json_option
def ping_cmd(url: str, baud: int, count: int, as_json: bool) -> None:
    """Check the link: round-trip times of PING frames."""
    with _open(url, baud) as client:
        rtts_ms = [client.ping(b"tinyship") * 1000.0 for _ in range(count)]
        retries = client.counters.retries
    result = {"count": count, "min_ms": min(rtts_ms), "max_ms": max(rtts_ms),
              "mean_ms": sum(rtts_ms) / count, "retries": retries}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{count} pings: min/mean/max {result['min_ms']:.2f}/{result['mean_ms']:.2f}/"
                   f"{result['max_ms']:.2f} ms, {retries} retries")
