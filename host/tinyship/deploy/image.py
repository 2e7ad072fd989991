"""Flash a stored firmware image (`<registry>/builds/<version>/<env>/`) with the uploader
PlatformIO uses for the env, on the stored files, never a rebuild.

`stored_image` checks every file's SHA-256 against `build.json` before anything else;
`plan_upload` builds the exact command line; `run_upload` does the 1200-baud touch where the
board needs it, checks the files once more and runs the tool, streaming its lines.

The command lines follow the PlatformIO platforms pinned in platformio.ini:

* nano33ble (platform-nordicnrf52 10.4.0, `builder/main.py`, `upload_protocol == "sam-ba"`;
  `boards/nano33ble.json`: `use_1200bps_touch`, `wait_for_upload_port`):
  `bossac --port <port name> --write --erase -U --reset firmware.bin` after a 1200-baud touch
  and waiting for the bootloader's port (PlatformIO passes only its base name to bossac).
  We add `--verify` (bossac reads the flash back and compares). `--erase` erases the whole
  sketch region, the model slots included.
* nanorp2040connect (platform-raspberrypi 1.9.0, `builder/main.py`,
  `upload_protocol == "picotool"`; `boards/nanorp2040connect.json`: `use_1200bps_touch`,
  no `wait_for_upload_port`): a 1200-baud touch, then `rp2040load -v -D firmware.elf`
  (tool-rp2040tools; it finds the board in BOOTSEL mode over USB itself, no port). It has
  no verification of its own.
* esp32s3 (platform-espressif32 6.9.0, `builder/main.py` `upload_protocol == "esptool"`,
  `builder/frameworks/espidf.py` `FLASH_EXTRA_IMAGES`; board esp32-s3-devkitc-1:
  upload speed 460800, flash 8MB, qio -> `--flash_mode dio`, 80 MHz):
  `esptool.py --chip esp32s3 --port P --baud 460800 --before default_reset --after hard_reset
  write_flash -z --flash_mode dio --flash_freq 80m --flash_size 8MB 0x0 bootloader.bin
  0x8000 partitions.bin 0x10000 firmware.bin`. The env builds Arduino as an ESP-IDF
  component, so PlatformIO flashes no `boot_app0.bin` (that is the plain-Arduino builder's);
  our partition table has no otadata partition, and 0xe000 lies inside its `nvs` partition
  (0x9000-0xefff). esptool checks each written region by MD5 (its default).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyship.errors import DeviceError, RegistryError
from tinyship.registry import VERSION_RE, Registry, sha256_file

BUILD_INFO = "build.json"
PORT = "{port}"  #: placeholder in `UploadPlan.args` for the port known only after a touch
TAIL_LINES = 15
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

ListPorts = Callable[[], Iterable[str]]
OpenPort = Callable[[str, int], None]


class UploadError(DeviceError):
    """The uploader failed (exit code and its last lines in the message) or could not run."""

    def __init__(self, message: str, *, exit_code: int | None = None,
                 tail: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.tool_exit_code = exit_code
        self.tail = tail or []


class UploaderMissing(UploadError):
    """The env's uploader is neither in `tool_paths` nor on PATH."""


@dataclass(frozen=True)
class StoredImage:
    """A stored build whose files all matched `build.json` when it was opened."""

    version: str
    env: str
    directory: Path
    artifacts: dict[str, str]  # file name -> sha256 (from build.json, checked)
    info: dict[str, Any] = field(repr=False)

    def path(self, name: str) -> Path:
        return self.directory / name


@dataclass(frozen=True)
class _Uploader:
    tool: str
    names: tuple[str, ...]  # executable names looked up on PATH / in tool_paths
    package: str  # PlatformIO tool package it comes with
    needs: tuple[str, ...]  # stored files required, in command order
    touch: bool
    wait_for_new_port: bool
    verifies: str


_UPLOADERS: dict[str, _Uploader] = {
    "nano33ble": _Uploader(
        "bossac", ("bossac",), "tool-bossac", ("firmware.bin",), True, True,
        "bossac --verify reads the flash back and compares it with firmware.bin"),
    "nanorp2040connect": _Uploader(
        "rp2040load", ("rp2040load",), "tool-rp2040tools", ("firmware.elf",), True, False,
        "none: rp2040load does not verify; check the board's report after the upload"),
    "esp32s3": _Uploader(
        "esptool.py", ("esptool.py", "esptool"), "tool-esptoolpy",
        ("bootloader.bin", "partitions.bin", "firmware.bin"), False, False,
        "esptool checks each written region's MD5 (write_flash default)"),
}
#: PlatformIO board ids of the envs, accepted as well as the env names.
_BOARD_IDS = {"esp32-s3-devkitc-1": "esp32s3"}
#: esptool `write_flash` arguments before the images (platform-espressif32 6.9.0 for the
#: esp32-s3-devkitc-1 board) and the image offsets (bootloader at 0x0 on the S3, the
#: partition table at 0x8000, the `factory` app of firmware/esp32s3/partitions.csv).
_ESP_BAUD = "460800"
_ESP_FLASH_ARGS = ("--flash_mode", "dio", "--flash_freq", "80m", "--flash_size", "8MB")
_ESP_OFFSETS = {"bootloader.bin": "0x0", "partitions.bin": "0x8000", "firmware.bin": "0x10000"}


@dataclass(frozen=True)
class UploadPlan:
    """The exact command for one stored image; `args` holds `PORT` where the port goes."""

    env: str
    tool: str
    executable: tuple[str, ...]  # the tool (behind the Python interpreter for a .py)
    args: tuple[str, ...]
    files: dict[str, str]  # absolute path of each stored file passed -> its sha256
    cwd: Path
    port: str
    touch_1200: bool
    wait_for_new_port: bool
    verifies: str

    def command(self, port: str | None = None) -> list[str]:
        """The argv, with `port` (default: the plan's) where the tool takes it; bossac gets
        the port's base name, as PlatformIO passes it."""
        p = port or self.port
        if self.tool == "bossac" and "/" in p:
            p = os.path.basename(p)
        return [*self.executable, *(p if a == PORT else a for a in self.args)]

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "tool": self.tool, "command": self.command(),
                "files": dict(self.files), "cwd": str(self.cwd), "port": self.port,
                "touch_1200": self.touch_1200, "wait_for_new_port": self.wait_for_new_port,
                "verifies": self.verifies}


@dataclass(frozen=True)
class UploadResult:
    env: str
    tool: str
    command: list[str]
    port: str  # the port the tool was given (after a touch: the bootloader's)
    exit_code: int
    duration_s: float
    tail: list[str]
    verifies: str

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "tool": self.tool, "command": self.command, "port": self.port,
                "exit_code": self.exit_code, "duration_s": round(self.duration_s, 3),
                "tail": self.tail, "verifies": self.verifies}


def _damaged(directory: Path, what: str) -> RegistryError:
    return RegistryError(f"stored image {directory}: {what}",
                         hint="rebuild it with `tinyship build --env ENV --model VERSION`")


def stored_image(registry: Registry | Path, version: str, env: str) -> StoredImage:
    """The stored build of `version` for `env`, every file's SHA-256 checked against
    `build.json` first: RegistryError naming the file when one differs or is missing."""
    reg = registry if isinstance(registry, Registry) else Registry(Path(registry))
    if not VERSION_RE.match(version):
        version = reg.resolve(version)
    directory = reg.root / "builds" / version / env
    info_path = directory / BUILD_INFO
    if not info_path.is_file():
        raise RegistryError(
            f"no stored image of {version} for env '{env}' ({info_path} is missing)",
            hint=f"build it first: `tinyship build --env {env} --model {version}`")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _damaged(directory, f"{BUILD_INFO} is unreadable: {e}") from None
    artifacts = info.get("artifacts") if isinstance(info, dict) else None
    if not isinstance(artifacts, dict) or not artifacts:
        raise _damaged(directory, f"{BUILD_INFO} lists no artifacts")
    for key, want in (("env", env), ("version", version)):
        if info.get(key) != want:
            raise _damaged(directory, f"{BUILD_INFO} says {key} '{info.get(key)}', not "
                                      f"'{want}'")
    checked: dict[str, str] = {}
    for name, digest in sorted(artifacts.items()):
        if not isinstance(name, str) or not _NAME_RE.match(name) or not isinstance(digest, str):
            raise _damaged(directory, f"{BUILD_INFO} has a bad artifact entry {name!r}")
        path = directory / name
        if not path.is_file():
            raise _damaged(directory, f"{name} is missing (listed in {BUILD_INFO})")
        actual = sha256_file(path)
        if actual != digest.lower():
            raise _damaged(directory, f"{name} does not match its SHA-256 in {BUILD_INFO} "
                                      f"(expected {digest[:12]}…, found {actual[:12]}…)")
        checked[name] = actual
    return StoredImage(version, env, directory, checked, info)


def _find_tool(up: _Uploader, tool_paths: dict[str, str | Path] | None) -> list[str]:
    given = (tool_paths or {}).get(up.tool)
    if given is not None:
        exe = shutil.which(str(given)) or (str(given) if Path(given).is_file() else None)
        if exe is None:
            raise UploaderMissing(f"{up.tool} not found at {given} (tool_paths)",
                                  hint=_tool_hint(up))
    else:
        exe = next((w for w in map(shutil.which, up.names) if w), None)
        if exe is None:
            raise UploaderMissing(f"{up.tool} is not installed (not on PATH)",
                                  hint=_tool_hint(up))
    return [sys.executable, exe] if exe.endswith(".py") else [exe]


def _tool_hint(up: _Uploader) -> str:
    return (f"{up.tool} comes with PlatformIO's {up.package} package: run one "
            f"`pio run -e ENV -t upload` to install it, then put "
            f"~/.platformio/packages/{up.package} on PATH or pass its path in tool_paths")


def plan_upload(env_board: str, image: StoredImage, port: str, *,
                tool_paths: dict[str, str | Path] | None = None) -> UploadPlan:
    """The uploader command for `image` on the board of env (or PlatformIO board id)
    `env_board`. Refuses an image that lacks a file the command needs (an esp32s3 image
    stored before `tinyship build` kept the bootloader and partition table) and a tool
    that is not installed (`UploaderMissing`), before anything touches the board."""
    env = _BOARD_IDS.get(env_board, env_board)
    up = _UPLOADERS.get(env)
    if up is None:
        raise UploadError(f"no uploader known for '{env_board}' "
                          f"(known: {', '.join(sorted(_UPLOADERS))})", hint=None)
    if image.env != env:
        raise UploadError(f"stored image {image.directory} is for env '{image.env}', "
                          f"not '{env}'", hint=None)
    for name in up.needs:
        if name not in image.artifacts:
            raise RegistryError(
                f"stored image {image.directory} has no {name}, which the {env} upload "
                "needs (stored by an older tinyship build)",
                hint=f"rebuild it: `tinyship build --env {env} --model {image.version}`")
    executable = _find_tool(up, tool_paths)
    files = {str(image.path(n).resolve()): image.artifacts[n] for n in up.needs}
    paths = list(files)
    if env == "nano33ble":
        args: tuple[str, ...] = ("--port", PORT, "--write", "--erase", "--verify", "-U",
                                 "--reset", paths[0])
    elif env == "nanorp2040connect":
        args = ("-v", "-D", paths[0])
    else:
        images = [a for n, p in zip(up.needs, paths, strict=True) for a in (_ESP_OFFSETS[n], p)]
        args = ("--chip", "esp32s3", "--port", PORT, "--baud", _ESP_BAUD,
                "--before", "default_reset", "--after", "hard_reset",
                "write_flash", "-z", *_ESP_FLASH_ARGS, *images)
    return UploadPlan(env, up.tool, tuple(executable), args, files, image.directory.resolve(),
                      port, up.touch, up.wait_for_new_port, up.verifies)


def list_serial_ports() -> list[str]:
    """Device names of the serial ports present now (pyserial)."""
    from serial.tools import list_ports

    return [p.device for p in list_ports.comports()]


def _open_at(port: str, baud: int) -> None:
    import serial

    try:
        s = serial.Serial(port=port, baudrate=baud)
        s.dtr = False
        s.close()
    except (serial.SerialException, OSError, ValueError) as e:
        raise DeviceError(f"cannot open {port} at {baud} baud for the bootloader touch: {e}",
                          hint=None) from None


def touch_1200bps(port: str, *, wait_for_new_port: bool = True, timeout_s: float = 5.0,
                  poll_s: float = 0.25, list_ports: ListPorts = list_serial_ports,
                  open_port: OpenPort = _open_at,
                  sleep: Callable[[float], None] = time.sleep) -> str:
    """Open `port` at 1200 baud and close it (the Arduino bootloader request), then wait for
    a port that was not there a poll before (PlatformIO's `WaitForNewSerialPort`, so a port
    that vanishes and comes back under its old name counts). Returns that port, else, at the
    deadline, `port` if it is still present; DeviceError if no port is left."""
    previous = set(list_ports())
    open_port(port, 1200)
    if not wait_for_new_port:
        return port
    now = previous
    waited = 0.0
    while waited < timeout_s:
        sleep(poll_s)
        waited += poll_s
        now = set(list_ports())
        new = sorted(now - previous)
        if new:
            return new[0]
        previous = now
    if port in now:
        return port
    raise DeviceError(f"no bootloader port appeared within {timeout_s:g} s after the "
                      f"1200-baud touch on {port}",
                      hint="double-tap the board's reset button and retry with its new port")


def _check_files(plan: UploadPlan) -> None:
    for path, digest in plan.files.items():
        p = Path(path)
        if not p.is_file() or sha256_file(p) != digest:
            raise _damaged(plan.cwd, f"{p.name} changed or vanished since it was verified")


def run_upload(plan: UploadPlan, *, on_line: Callable[[str], None] | None = None,
               timeout_s: float = 180.0, touch: Callable[..., str] = touch_1200bps,
               list_ports: ListPorts | None = None) -> UploadResult:
    """Run the plan: the files' SHA-256 checked once more, the 1200-baud touch where the
    board needs one, then the tool with its output streamed line by line to `on_line`.
    UploadError (exit 8) with the exit code and the tool's last lines when it fails or
    runs longer than `timeout_s`."""
    _check_files(plan)
    port = plan.port
    if plan.touch_1200:
        kw: dict[str, Any] = {"wait_for_new_port": plan.wait_for_new_port}
        if list_ports is not None:
            kw["list_ports"] = list_ports
        port = touch(plan.port, **kw)
    argv = plan.command(port)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=plan.cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
    except FileNotFoundError:
        raise UploaderMissing(f"{plan.tool} is not installed ({argv[0]} not found)",
                              hint=_tool_hint(_UPLOADERS[plan.env])) from None
    except OSError as e:
        raise UploadError(f"cannot run {plan.tool}: {e}") from None
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream: Any) -> None:
        for line in stream:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
    tail: list[str] = []
    deadline = started + timeout_s
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            proc.wait()
            raise UploadError(
                f"{plan.tool} did not finish within {timeout_s:g} s (killed):\n"
                + "\n".join(tail[-TAIL_LINES:]), tail=tail[-TAIL_LINES:]) from None
        if line is None:
            break
        tail = [*tail[-(TAIL_LINES * 2):], line]
        if on_line:
            on_line(line)
    try:
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise UploadError(f"{plan.tool} did not exit within {timeout_s:g} s (killed)",
                          tail=tail[-TAIL_LINES:]) from None
    if code != 0:
        raise UploadError(f"{plan.tool} failed (exit {code}):\n" + "\n".join(tail[-TAIL_LINES:]),
                          exit_code=code, tail=tail[-TAIL_LINES:])
    return UploadResult(plan.env, plan.tool, argv, port, code, time.monotonic() - started,
                        tail[-TAIL_LINES:], plan.verifies)
