"""Run the MLCommons tiny runner, unchanged, against a port it cannot find by itself.

The runner (mlcommons/tiny `benchmark/runner/main.py`) finds its DUT by USB VID/PID: it keeps
the entries of `serial.tools.list_ports.comports(True)` that have a `vid`, matches them with
the `usb:` map of a `type: dut` entry in its device list, and opens the match with
`serial.Serial(port, baud)`. A pty (`tinyship emulator --pty`) has no VID/PID, and
`serial.Serial` does not open `socket://` URLs, so the runner never sees a virtual board.

This launcher runs the runner's `main.py` in this process after three patches:

* `list_ports.comports` lists only `--port`, presented with `--vid`/`--pid` (default
  2341:805A, an Arduino Nano 33 BLE), which the DUT entry of the device list must name;
* `serial.Serial` opens URLs (`socket://...`) through `serial.serial_for_url`;
* `usb.core.find` (pyusb, for the JS220 power monitor) finds nothing, and a stand-in module
  is used when pyusb is not installed: energy mode is not supported (PROTOCOL.md section 7).

    cd ~/tiny/benchmark/runner
    python -m tinyship.hil.mlcommons_runner --port /dev/pts/7 -- \\
        --device_list devices_tinyship.yaml --dataset_path ~/mlperf-data --mode a

Arguments after `--` go to the runner. Its own dependencies (PyYAML, numpy, scikit-learn,
matplotlib) must be importable by this Python. See firmware/README.md for a worked example.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: USB VID/PID of an Arduino Nano 33 BLE running a sketch; the device list names it.
DEFAULT_VID = 0x2341
DEFAULT_PID = 0x805A


def _int(text: str) -> int:
    return int(text, 0)


def fake_port(device: str, vid: int, pid: int) -> Any:
    """A `ListPortInfo` for `device` that carries a USB VID/PID."""
    from serial.tools.list_ports_common import ListPortInfo

    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid = vid, pid
    info.description = f"tinyship board on {device}"
    info.hwid = f"USB VID:PID={vid:04X}:{pid:04X}"
    return info


def install_patches(port: str, vid: int, pid: int) -> None:
    """Make the runner's discovery find `port` and open it (see the module docstring)."""
    import serial
    from serial.tools import list_ports

    def comports(include_links: bool = False) -> list[Any]:
        return [fake_port(port, vid, pid)]

    list_ports.comports = comports
    plain_serial = serial.Serial

    def open_serial(port_name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        if port_name is not None and "://" in port_name:
            return serial.serial_for_url(port_name, *args, **kwargs)
        return plain_serial(port_name, *args, **kwargs)

    serial.Serial = open_serial

    def find_nothing(*_args: Any, **_kwargs: Any) -> list[Any]:
        return []

    try:
        import usb.core
    except ImportError:
        usb = types.ModuleType("usb")
        core = types.ModuleType("usb.core")
        core.find = find_nothing  # type: ignore[attr-defined]
        usb.core = core  # type: ignore[attr-defined]
        sys.modules.update({"usb": usb, "usb.core": core})
    else:
        usb.core.find = find_nothing


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tinyship.hil.mlcommons_runner",
        description="Run the MLCommons tiny runner (main.py) against a pty or socket:// port.")
    parser.add_argument("--runner", type=Path, default=Path("."),
                        help="the runner's folder, benchmark/runner [default: .]")
    parser.add_argument("--port", required=True,
                        help="the board's port: a pty path or socket://host:port")
    parser.add_argument("--vid", type=_int, default=DEFAULT_VID,
                        help=f"USB VID to present [default: {DEFAULT_VID:#06x}]")
    parser.add_argument("--pid", type=_int, default=DEFAULT_PID,
                        help=f"USB PID to present [default: {DEFAULT_PID:#06x}]")
    parser.add_argument("runner_args", nargs="*", help="arguments for main.py (after --)")
    args = parser.parse_args(argv)
    main_py = args.runner / "main.py"
    if not main_py.is_file():
        parser.error(f"{main_py} not found: pass --runner <mlcommons/tiny>/benchmark/runner")
    install_patches(args.port, args.vid, args.pid)
    sys.path.insert(0, str(args.runner.resolve()))
    sys.argv = [str(main_py), *args.runner_args]
    runpy.run_path(str(main_py), run_name="__main__")


if __name__ == "__main__":
    main()
