"""`tinyship emulator`: serve a virtual board for a registry version until interrupted.

The first line on stdout is the serial URL (or `{"url": ...}` with `--json`), flushed at
once, so scripts and tests can read it and connect. A `--state` folder whose application
region holds an uploaded full image (`tinyship.deploy.virtual_upload`) runs that firmware,
not `--model`'s, as a board keeps what was last uploaded to it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from tinyship.cli._common import json_option, model_option, project_context, registry_options


@click.command()
@model_option
@registry_options
@click.option("--baud", type=click.IntRange(min=0), default=115200, show_default=True,
              help="Link speed of the modelled UART, 10 bits per byte; 0 = unpaced (a byte "
              "stream without a byte rate).")
@click.option("--rx-buffer", "rx_buffer", type=click.IntRange(min=1), default=256,
              show_default=True,
              help="Receive buffer of the modelled UART in bytes (the Arduino cores' is 256): "
              "bytes arriving while the core is busy and it is full are lost. Advertised in "
              "INFO as the host's window.")
@click.option("--faults", "faults_spec", default=None, metavar="SPEC",
              help="Fault injection, e.g. corrupt_rx=0.01,drop_tx=0.005,garbage=0.05,"
              "reset_after=20,hang_after=50,wrong_version,wrong_hash,wrong_prediction=0.1,"
              "seed=1; model-slot flash: power_cut_at=N (the Nth erase/program since start), "
              "power_cut=0.1 (per operation), power_cut_mode=before|torn|random.")
@click.option("--state", "state_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the board's persistent state [default: a temporary folder].")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="TCP port for socket:// (0 = any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--pty", "use_pty", is_flag=True, help="Serve a pty instead of a TCP socket.")
@click.option("--reset-on-open/--no-reset-on-open", "reset_on_open", default=False,
              show_default=True,
              help="Reset the board when a host connects, as an Arduino whose DTR line resets "
              "it. Off: a USB board (nano33ble, RP2040, ESP32-S3 native USB) that keeps "
              "running, so a trial model waits for `tinyship device confirm` from a new "
              "connection.")
@click.option("--slot-bytes", "slot_bytes", type=click.IntRange(min=8192), default=128 * 1024,
              show_default=True,
              help="Bytes of each of the two model slots in the simulated flash (whole 4 KiB "
              "sectors, the last one holds the slot's flags); kept in --state as flash.bin.")
@click.option("--boot-delay", "boot_delay", type=click.FloatRange(min=0.0), default=0.3,
              show_default=True, help="Seconds from port open (reset) to the boot banner.")
@click.option("--realtime", is_flag=True,
              help="Run at the modelled board's speed: sleep so that wall time keeps up with "
              "the board's clock (for benchmarks with a minimum duration, e.g. the MLCommons "
              "runner's 10 s).")
@json_option
def emulator(model: str | None, registry_dir: Path | None, config_path: Path | None,
             baud: int, faults_spec: str | None, state_dir: Path | None, port: int,
             host: str, use_pty: bool, boot_delay: float, realtime: bool, rx_buffer: int,
             reset_on_open: bool, slot_bytes: int, as_json: bool) -> None:
    """Run a virtual tinyship board (the firmware core + TFLite Micro) on a serial URL."""
    from tinyship.device.virtual import VirtualBoard, parse_faults

    try:
        faults = parse_faults(faults_spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--faults") from None
    registry, board = project_context(config_path, registry_dir)
    try:
        vb = VirtualBoard(registry.root, model, board=board, baud=baud, faults=faults,
                          state_dir=state_dir, boot_delay_s=boot_delay, host=host, port=port,
                          pty=use_pty, realtime=realtime, rx_buffer=rx_buffer,
                          reset_on_open=reset_on_open, slot_bytes=slot_bytes)
    except ValueError as e:  # the slot geometry (click checked the other values)
        raise click.BadParameter(str(e), param_hint="--slot-bytes") from None
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = vb.start()
        running = vb.firmware.version if vb.booted != "bootloader" else None
        if as_json:
            click.echo(json.dumps({"url": url, "version": running}))
        else:
            click.echo(url)
        sys.stdout.flush()
        if vb.booted == "image":
            click.echo(f"{'--model ignored: ' if model else ''}the state's flash holds "
                       f"{vb.firmware.version} (firmware {vb.firmware.firmware_version}), "
                       "uploaded as a full image; it runs", err=True)
        elif vb.booted == "bootloader":
            click.echo(f"the board waits in its bootloader: {vb.bootloader_reason}; upload a "
                       "full image to recover it", err=True)
        click.echo(f"virtual board {vb.board.name}: model {running or 'none'}, "
                   f"baud {baud or 'unpaced'}"
                   + (f" ({rx_buffer}-byte receive buffer)" if baud else "")
                   + f", MLPerf model {vb.board.mlperf_model}"
                   + (", real time" if realtime else "")
                   + (", resets when a host connects" if reset_on_open else "")
                   + f", state {vb.state.dir}"
                   + (f", faults {faults.to_spec()}" if faults.active else "")
                   + "; Ctrl-C to stop", err=True)
        while not done.wait(0.5):
            if not vb.running:
                break
    finally:
        vb.stop()
        for s, h in old.items():
            signal.signal(s, h)
