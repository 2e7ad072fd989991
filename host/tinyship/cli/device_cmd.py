"""`tinyship device`: technician commands over serial (version, statistics, link check, model
slots: `slots`, `load-model`, `confirm`, `revert`), and `serve`: a port over RFC 2217.

No TensorFlow, so they start fast; `info` compares with the registry when one is reachable
(JSON manifests only) and works offline without one. The slot commands are thin:
`tinyship.device.slots` does the work.
Exit codes: 7 (`ModelError`) for a model the board's firmware cannot run, refused before
anything is sent; 8 (`DeviceError`) for a board that refuses, times out or reverts a trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tinyship.cli._common import (
    echo_json,
    error_json,
    json_option,
    project_context,
    registry_options,
)

if TYPE_CHECKING:
    from tinyship.device import protocol as P
    from tinyship.device.slots import SlotClient

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
    """Talk to a board: version and model, statistics, link check, model slots; serve its
    port over RFC 2217."""


@device.command("info")
@device_option
@baud_option
@click.option("--expect", "expect", default=None, metavar="VERSION",
              help="Also check the board runs this registry version or alias (exit 9 if not).")
@click.option("--no-registry", is_flag=True,
              help="Do not compare with the registry (by default, when one is reachable).")
@registry_options
@json_option
def info_cmd(url: str, baud: int, expect: str | None, no_registry: bool,
             config_path: Path | None, registry_dir: Path | None, as_json: bool) -> None:
    """Print what the board reports (firmware and model version, SHA-256, self-test, slot,
    uptime) and, when a registry is reachable, compare its model with it: known version?
    production? a newer production? SHA-256 as registered? Exit 9 when the board's
    self-test or model CRC check failed, or its model is not the registered build."""
    from tinyship.device import report as R
    from tinyship.errors import RegistryError, TinyshipError, ValidationFailed

    client = _open(url, baud)
    try:
        info = client.hello().to_dict()
    finally:
        client.close(quick=True)  # the process ends now: no pause for a reconnect
    problems = R.board_problems(info)

    registry: dict[str, Any] | None = None
    comparison: R.RegistryComparison | None = None
    unavailable: str | None = None
    reg = None
    if not no_registry or expect is not None:
        try:
            reg = _info_registry(config_path, registry_dir)
            if not no_registry:
                facts = R.registry_facts(reg)
                if not facts.versions:
                    raise RegistryError(f"{reg.root}: no registry versions there")
                comparison = R.compare(info, facts)
        except TinyshipError as e:  # technicians are often offline: carry on without it
            if expect is not None:
                raise
            unavailable = str(e)
        if comparison is not None:
            registry = {"available": True, **comparison.to_dict()}
            problems += comparison.problems()
        elif not no_registry:
            registry = {"available": False, "reason": unavailable}

    expected: dict[str, Any] | None = None
    if expect is not None:
        assert reg is not None
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

    error = ValidationFailed("; ".join(dict.fromkeys(problems))) if problems else None
    if as_json:
        doc = {"device": info, "registry": registry, "expected": expected, "ok": not problems,
               "problems": problems}
        echo_json({**error_json(error), **doc} if error else doc)
    else:
        _print_info(info)
        if comparison is not None:
            for line in comparison.lines():
                click.echo(line)
        elif not no_registry:
            click.echo(f"registry: not available ({unavailable})")
        if expected:
            click.echo("matches registry " + expected["version"] if not problems
                       else "MISMATCH: " + "; ".join(problems))
        for p in problems:
            click.echo(f"FAIL: {p}")
    if error is not None:
        raise error


def _info_registry(config_path: Path | None, registry_dir: Path | None) -> Any:
    """The registry `device info` compares with: `--registry` as given (no config needed),
    else the usual `--config` / ./tinyship.toml / ./models resolution. RegistryError when
    the folder does not exist."""
    from tinyship.errors import RegistryError

    if registry_dir is not None and config_path is None:
        from tinyship.registry import Registry

        reg = Registry(registry_dir)
    else:
        reg, _ = project_context(config_path, registry_dir)
    if not reg.root.is_dir():
        raise RegistryError(f"no registry folder {reg.root}")
    return reg


def _print_info(info: dict[str, Any]) -> None:
    keys = ("board", "firmware_version", "model_version", "model_sha256", "profile",
            "model_crc_check", "protocol_version", "boot_count", "reset_reason_name",
            "uptime_us", "arena_used", "arena_size", "git_commit", "build_time",
            "device_id", "slot_capacity")
    for k in keys:
        if info.get(k) is not None:
            click.echo(f"{k:18} {info[k]}")
    running = info.get("running") or {}
    if running:
        note = (": not confirmed yet (`tinyship device confirm` keeps it, a reset reverts it)"
                if running.get("mode_name") == "trial" else "")
        click.echo(f"{'running':18} {running['source_name']} ({running['mode_name']}){note}")
    link = info.get("link") or {}
    if link:
        extra = (f" {link.get('baud')} baud, {link.get('rx_window')}-byte receive window"
                 if link.get("kind_name") == "uart" else "")
        click.echo(f"{'link':18} {link.get('kind_name')}{extra}")
    st = info.get("self_test") or {}
    if st:
        click.echo(f"{'self_test':18} {st.get('status_name')} ({st.get('vectors')} vectors,"
                   f" max diff {st.get('max_diff_lsb')} LSB)")


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


# --- model slots ---------------------------------------------------------------------------


def _slot_client(client: Any) -> SlotClient:
    from tinyship.device.slots import SlotClient

    return SlotClient(client)


def _slot_line(i: int, r: P.SlotRecord) -> str:
    from tinyship.device import protocol as P

    head = f"slot {P.slot_letter(i)}"
    if not r.has_image:
        extra = "" if r.state == P.SlotState.EMPTY else f" (header status {r.header_status})"
        return f"{head:12} {r.state_name}{extra}"
    crc = "crc ok" if r.crc_ok else "CRC BAD"
    return (f"{head:12} {r.state_name:9} {r.model_version:8} seq {r.sequence:<4} "
            f"{r.model_bytes:,} bytes  {crc}  sha256 {r.model_sha256[:12]}")


@device.command("slots")
@device_option
@baud_option
@json_option
def slots_cmd(url: str, baud: int, as_json: bool) -> None:
    """Show the model slots: what runs (factory, slot A or B; confirmed or trial), each slot's
    model and state, the flash geometry and what the firmware can run."""
    from tinyship.device import slot_image as SI

    with _open(url, baud) as client:
        sc = _slot_client(client)
        info = sc.info()
        slots = sc.slot_info()
    doc = {"board": info.board, "device_id": info.device_id,
           "protocol_version": info.protocol_version, "model_version": info.model_version,
           **slots.to_dict()}
    if as_json:
        echo_json(doc)
        return
    run = slots.running
    version = f" ({info.model_version})" if info.model_version else ""
    click.echo(f"{'running':12} {run.source_name}, {run.mode_name}{version}")
    for i, r in enumerate(slots.slots):
        click.echo(_slot_line(i, r))
    g, f = slots.geometry, slots.firmware
    erase = f", erase {g.erase_sector_us / 1000:g} ms/sector" if g.erase_sector_us else ""
    click.echo(f"{'capacity':12} {g.slot_capacity:,} bytes per slot (sector {g.sector_bytes:,}"
               f" B, program unit {g.program_unit} B{erase})")
    ops = ", ".join(SI.OP_NAMES.get(o, str(o)) for o in f.ops)
    click.echo(f"{'firmware':12} profile {f.profile}, arena {f.arena_bytes:,} B, input "
               f"{f.input_bytes:,} B, output {f.output_bytes:,} B")
    click.echo(f"{'operators':12} {ops or '-'}")
    if slots.install_in_progress and slots.install_slot is not None:
        from tinyship.device import protocol as P

        click.echo(f"{'install':12} in progress into slot {P.slot_letter(slots.install_slot)}"
                   f": {slots.install_next:,} of {slots.install_image_len:,} bytes")
    if info.device_id:
        click.echo(f"{'device id':12} {info.device_id}")


@device.command("load-model")
@device_option
@baud_option
@click.option("--model", "model", required=True, metavar="VERSION",
              help="Registry version or alias to install (e.g. v0004, production).")
@click.option("--no-reboot", is_flag=True,
              help="Only install: the model stays pending and runs as a trial after the "
              "board's next reset.")
@registry_options
@json_option
def load_model_cmd(url: str, baud: int, model: str, no_reboot: bool,
                   config_path: Path | None, registry_dir: Path | None, as_json: bool) -> None:
    """Install a registry model into the board's inactive slot over serial and reboot into
    it as a trial. A model the firmware cannot run is refused before anything is sent
    (exit 7), and so is, with `deploy.public_key` configured, a version not signed with
    that key (exit 11); keep the trial with `device confirm`, drop it with `device
    revert`."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    from tinyship.device.slots import IncompatibleModel, image_from_registry
    from tinyship.errors import ValidationFailed
    from tinyship.signing import public_key_from_config, verify_version

    reg, _ = project_context(config_path, registry_dir)
    version = reg.resolve(model)
    key = public_key_from_config(config_path)
    if key is not None:  # a release policy: only signed versions reach a board
        verify_version(reg, version, key)
    with _open(url, baud) as client:
        sc = _slot_client(client)
        slots = sc.slot_info()
        image = image_from_registry(reg, version, slots.next_sequence)
        try:
            header = sc.check_image(image, slots)  # refuse before any send
        except IncompatibleModel as e:
            if as_json:
                echo_json({**error_json(e), "incompatible": e.to_dict()})
            raise
        if not header.golden_inputs:  # the trial's health check can only load the model
            click.echo(f"warning: {version} has no golden vectors to carry (none embedded "
                       "in its firmware files, or too large for a slot header): its trial "
                       "boot runs no self-test; check it before `tinyship device confirm`",
                       err=True)
        with Progress("[progress.description]{task.description}", BarColumn(),
                      DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"{version}: erasing", total=len(image))

            def progress(phase: str, done: int, total: int) -> None:
                words = {"erase": "erasing", "write": "writing", "verify": "verifying"}
                bar.update(task, description=f"{version}: {words.get(phase, phase)}",
                           completed=done, total=total)

            result = sc.install(image, progress=progress, slots=slots)
        report: dict[str, Any] = {"ok": True, "model": {"version": version,
                                                        "sha256": result.model_sha256},
                                  "install": result.to_dict(), "boot": None}
        problem: str | None = None
        if not no_reboot:
            boot = sc.reboot_and_wait()
            report["boot"] = boot.to_dict()
            run = boot.running
            if run.slot != result.slot or not run.trial:
                rec = sc.slot_info().slots[result.slot]
                report["slot"] = rec.to_dict()
                problem = (f"the board did not keep {version}: its trial boot failed the "
                           f"health check (model load or golden-vector self-test), "
                           f"{result.slot_name} is {rec.state_name} and the board runs "
                           f"{run.source_name} ({run.mode_name})")
            elif boot.info.model_sha256 not in (None, result.model_sha256):
                problem = (f"{result.slot_name} runs a model whose SHA-256 differs from "
                           f"{version}'s")
    if problem is not None:
        # The board is reachable and did its job (it reverted): the model failed on it.
        err = ValidationFailed(problem, hint="the board reverted to its previous model; "
                               "`tinyship device slots` shows the slot's state")
        if as_json:
            echo_json({**error_json(err), **report, "ok": False})
        raise err
    if as_json:
        echo_json(report)
        return
    util = (f", {result.link_utilization:.0%} of the link" if result.link_utilization
            is not None else "")
    click.echo(f"installed {version} in {result.slot_name} (sequence {result.sequence}): "
               f"{result.image_bytes:,} bytes, erase {result.erase_s:.2f} s, write "
               f"{result.write_s:.2f} s ({result.write_bytes_per_s:,.0f} B/s{util})")
    if no_reboot:
        click.echo(f"{result.slot_name} is pending: it runs as a trial after the board's "
                   "next reset")
        return
    boot_doc = report["boot"]
    test = boot_doc["self_test"] or {}
    click.echo(f"running {boot_doc['running']['source_name']} "
               f"({boot_doc['running']['mode_name']}): {boot_doc['model_version']}, "
               f"self-test {test.get('status_name', '?')} ({test.get('vectors', 0)} vectors)")
    click.echo(f"keep it: tinyship device confirm --device {url}; drop it: tinyship device "
               f"revert --device {url}")


@device.command("confirm")
@device_option
@baud_option
@json_option
def confirm_cmd(url: str, baud: int, as_json: bool) -> None:
    """Keep the trial model: the board runs it across resets from now on (a confirmed slot:
    no change). Refused when the factory model runs."""
    with _open(url, baud) as client:
        sc = _slot_client(client)
        running = sc.confirm()
        info = client.hello()
    doc = {"ok": True, "confirmed": running.source_name, "model_version": info.model_version,
           "model_sha256": info.model_sha256,
           "running": None if info.running is None else info.running.to_dict()}
    if as_json:
        echo_json(doc)
    else:
        click.echo(f"confirmed {running.source_name} ({info.model_version}): it stays the "
                   "board's model across resets")


@device.command("revert")
@device_option
@baud_option
@json_option
def revert_cmd(url: str, baud: int, as_json: bool) -> None:
    """Drop the running slot model (trial or confirmed): the board resets and runs the
    previous confirmed slot, else its factory model."""
    with _open(url, baud) as client:
        result = _slot_client(client).revert()
    doc = {"ok": True, **result.to_dict()}
    if as_json:
        echo_json(doc)
        return
    if result.boot is None:
        click.echo(f"revoked {result.reverted.source_name}; reset the board to run the "
                   "previous model")
        return
    run = result.boot.running
    click.echo(f"reverted {result.reverted.source_name}; the board runs {run.source_name} "
               f"({run.mode_name}): {result.boot.info.model_version}")


@device.command("reboot")
@device_option
@baud_option
@json_option
def reboot_cmd(url: str, baud: int, as_json: bool) -> None:
    """Reset the board and report what it runs after its boot decision: a pending slot
    (`load-model --no-reboot`) starts its trial; an unconfirmed trial is reverted."""
    with _open(url, baud) as client:
        sc = _slot_client(client)
        before = sc.slot_info().running
        if before.trial:
            click.echo(f"warning: {before.source_name} runs an unconfirmed trial: this reset "
                       "reverts it", err=True)
        boot = sc.reboot_and_wait()
    doc = {"ok": True, "reverted_trial": before.source_name if before.trial else None,
           **boot.to_dict()}
    if as_json:
        echo_json(doc)
        return
    run = boot.running
    click.echo(f"rebooted in {boot.elapsed_s:.2f} s; the board runs {run.source_name} "
               f"({run.mode_name}): {boot.info.model_version}")


# --- serving a port over the network ------------------------------------------------------


def _listen_address(_ctx: click.Context, _param: click.Parameter, text: str
                    ) -> tuple[str, int]:
    """`--listen HOST:PORT` (an IPv6 host in brackets) -> (host, port), checked by click."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise click.BadParameter(f"'{text}': expected HOST:PORT (127.0.0.1:2217, "
                                 "0.0.0.0:2217, [::1]:2217; port 0: any free one)")
    return host, int(port)


@device.command("serve")
@click.option("--port", "serial_url", required=True, metavar="SERIAL_URL",
              help="Serial port or pyserial URL to serve (/dev/ttyACM0, COM5, "
              "socket://host:port).")
@click.option("--listen", default="127.0.0.1:2217", show_default=True, metavar="HOST:PORT",
              callback=_listen_address,
              help="Address to serve on; 0.0.0.0:2217 for other machines (RFC 2217 has no "
              "authentication: a trusted rig network only). Port 0: any free one.")
@baud_option
def serve_cmd(serial_url: str, listen: tuple[str, int], baud: int) -> None:
    """Serve a serial port over RFC 2217 for a rig host without ser2net: other machines
    reach the board as rfc2217://HOST:PORT (`tinyship flash --device`, fleet files). Prints
    that URL first on stdout, then a line per client on stderr; Ctrl-C stops. The port is
    opened for each client and closed when it leaves, so a reconnect after a board reset
    reopens it, as a local port would."""
    from tinyship.device.rfc2217_bridge import Rfc2217Bridge

    host, port = listen
    bridge = Rfc2217Bridge(serial_url, host, port, baud=baud,
                           on_event=lambda text: click.echo(text, err=True))
    url = bridge.start()
    click.echo(url)  # click.echo flushes: a script reading the first line gets it now
    click.echo(f"serving {serial_url} on {url}; Ctrl-C stops", err=True)
    try:
        bridge.wait()
    except KeyboardInterrupt:
        pass
    finally:
        bridge.stop()
    click.echo("stopped", err=True)
