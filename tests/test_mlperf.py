"""The MLPerf Tiny stand-in (`tinyship.hil.mlperf`) reads replies exactly as the MLCommons tiny
runner does (mlcommons/tiny benchmark/runner: `SerialDevice._read_loop` and `send_command`,
`DUT._get_name/_get_profile`, `_ScriptInferStep._gather_infer_results`), and the launcher
(`tinyship.hil.mlcommons_runner`) lets that runner find a virtual board.

Replies the core really prints are read in tests/test_virtual_board.py; here are the runner's
corner cases. `TINYSHIP_MLCOMMONS_RUNNER=<tiny>/benchmark/runner` runs the real runner too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from tinyship.config import Config
from tinyship.device.transport import Transport
from tinyship.errors import DeviceTimeout, ProtocolError
from tinyship.hil import mlperf
from tinyship.hil.mlperf import LineSplitter, MlperfDut, parse_identity, parse_infer


class ScriptedPort:
    """Transport stand-in: `read()` returns the scripted chunks, then nothing."""

    url = "scripted://"

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = list(chunks)
        self.written = bytearray()
        self.bytes_tx = self.bytes_rx = 0

    def write(self, data: bytes) -> None:
        self.written += data
        self.bytes_tx += len(data)

    def read(self) -> bytes:
        data = self.chunks.pop(0) if self.chunks else b""
        self.bytes_rx += len(data)
        return data


def dut(*chunks: bytes) -> tuple[MlperfDut, ScriptedPort]:
    port = ScriptedPort(chunks)
    return MlperfDut(cast(Transport, port)), port


def test_lines_split_on_newline_only_dropping_cr_and_nul() -> None:
    split = LineSplitter()
    assert split.feed(b"m-re") == []
    assert split.feed(b"ady\r\n\r\n a b \x00c\r\rx\n") == ["m-ready", "", " a b cx"]
    assert split.feed(b"tail") == [] and split.feed(b"\n") == ["tail"]


def test_reply_ends_at_a_line_containing_m_ready_and_keeps_stray_lines() -> None:
    board, port = dut(b"tinyship ready proto=1 fw=0.1.0\r\n\r\nm-name-dut-[tinyship]\r\n",
                      b"tinyship: debugm-ready\r\nm-model-[ad01]\r\nm-ready\r\n")
    lines = board.command("name")
    assert port.written == b"name%"
    # the runner: empty lines skipped, stray text kept, `m-ready` anywhere ends the reply
    assert lines == ["tinyship ready proto=1 fw=0.1.0", "m-name-dut-[tinyship]",
                     "tinyship: debugm-ready"]
    assert board.command("profile") == ["m-model-[ad01]", "m-ready"]  # the rest stays queued


def test_identity_regexes_are_whole_line() -> None:
    lines = ["m-name-dut-[tinyship]", "m-profile-[ULPMark for tinyML Firmware V0.0.1]",
             "m-model-[kws01]", "x m-model-[vww01]", "m-model-[]", "m-model-[ic01] "]
    assert parse_identity(lines) == {"name": "tinyship", "model": "kws01",
                                     "profile": "ULPMark for tinyML Firmware V0.0.1"}


def test_infer_reply_parsed_as_the_runner_does() -> None:
    reply = parse_infer([
        "m-warmup-start-2", "m-warmup-done", "m-infer-start-3",
        "m-lap-us-1000", "m-lap-us-4000", "m-infer-done",
        "noise m-results-[9.0]",            # not a whole line: ignored
        "m-results-[1.250,-2.500,]",        # blank items skipped
        "m-lap-us-12x",                     # not digits only: ignored
        "m-ready",
    ])
    assert reply.results == [1.25, -2.5]
    assert (reply.start_us, reply.end_us, reply.elapsed_us) == (1000, 4000, 3000)
    # the last results line wins; a third lap moves the end; nothing: None
    again = parse_infer(["m-lap-us-5", "m-results-[1]", "m-lap-us-7", "m-lap-us-9",
                         "m-results-[2,3]"])
    assert again.results == [2.0, 3.0] and again.elapsed_us == 4
    assert parse_infer(["m-results-[]", "m-results-[a,b]"]).results == []
    assert parse_infer(["m-ready"]) == mlperf.InferReply(None, None, None)


def test_error_lines_raise_and_silence_times_out() -> None:
    board, _ = dut(b"e-[Input db has 0 bytes, expected 8]\r\nm-ready\r\n")
    with pytest.raises(ProtocolError, match="Input db has 0 bytes"):
        board.command("infer 1 0")
    board, _ = dut(b"m-lap-us-1\r\n")
    with pytest.raises(DeviceTimeout, match="no 'm-ready' after 'timestamp%'"):
        board.command("timestamp", line_timeout_s=0.05)


def test_inputs_are_sent_as_the_runner_sends_them() -> None:
    data = bytes(range(70))
    board, port = dut(*[b"m-ready\r\n"] * 4)
    board.load(data)
    # `db load N`, then 31 bytes (62 hex digits) per `db` command
    assert port.written.split(b"%")[:-1] == [
        b"db load 70", b"db " + data[:31].hex().encode(), b"db " + data[31:62].hex().encode(),
        b"db " + data[62:].hex().encode()]


def test_run_reads_results_in_target_units() -> None:
    ready = b"m-ready\r\n"
    infer = (b"m-warmup-start-0\r\nm-warmup-done\r\nm-infer-start-1\r\nm-lap-us-10\r\n"
             b"m-lap-us-60\r\nm-infer-done\r\nm-results-[42.125]\r\nm-ready\r\n")
    port = ScriptedPort([ready, ready, infer] * 2)
    result = mlperf.run(cast(Transport, port), np.zeros((2, 4), np.int8))
    np.testing.assert_array_equal(result.outputs, [[42.125], [42.125]])
    assert result.bytes_tx == len(port.written)


# --- the launcher -------------------------------------------------------------------------
FAKE_RUNNER = """\
# Stand-in for the MLCommons runner's discovery (device_manager.py): USB VID/PID, then
# serial.Serial(port, baud); `name%` at once, as its check_name probe does.
import sys
import serial
import usb.core
from serial.tools import list_ports

ports = [p for p in list_ports.comports(True) if p.vid]
assert [(p.vid, p.pid) for p in ports] == [(0x2341, 0x805A)], ports
assert list(usb.core.find(find_all=True)) == []
with serial.Serial(ports[0].device, 115200, timeout=1) as port:
    port.write(b"name%")
    reply = b""
    while b"m-ready" not in reply:
        chunk = port.read(64)
        assert chunk, reply
        reply += chunk
print("ARGS", sys.argv[1:])
print("REPLY", reply.decode().replace("\\r\\n", "|"))
"""


def test_launcher_lets_the_runner_find_and_open_a_socket_board(
        trained_registry: tuple[Config, str], tmp_path: Path) -> None:
    from tinyship.device.virtual import VirtualBoard

    cfg, version = trained_registry
    (tmp_path / "runner").mkdir()
    (tmp_path / "runner" / "main.py").write_text(FAKE_RUNNER)
    with VirtualBoard(cfg.registry_path, version, baud=0, boot_delay_s=0.2,
                      state_dir=tmp_path / "st") as board:
        proc = subprocess.run(
            [sys.executable, "-m", "tinyship.hil.mlcommons_runner", "--runner",
             str(tmp_path / "runner"), "--port", board.url, "--", "--mode", "p"],
            capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ARGS ['--mode', 'p']" in proc.stdout
    # opening the socket reset the board; `name%`, sent during the boot, is answered after
    # the banner
    reply = proc.stdout.split("REPLY ", 1)[1]
    assert reply.startswith("tinyship ready proto=2 ")
    assert "|m-name-dut-[tinyship]|m-ready|" in reply


def test_launcher_refuses_a_folder_without_the_runner(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tinyship.hil.mlcommons_runner", "--runner", str(tmp_path),
         "--port", "/dev/null"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "main.py not found" in proc.stderr


# --- the real runner (opt-in) -------------------------------------------------------------
def _runner_dir() -> Path:
    path = os.environ.get("TINYSHIP_MLCOMMONS_RUNNER")
    if not path:
        pytest.skip("set TINYSHIP_MLCOMMONS_RUNNER=<mlcommons/tiny>/benchmark/runner to run "
                    "the real MLCommons runner against the virtual board")
    return Path(path)


def test_real_mlcommons_runner_accuracy_mode_on_a_pty(trained_registry: tuple[Config, str],
                                                      tmp_path: Path) -> None:
    from tinyship.device.virtual import VirtualBoard
    from tinyship.registry import Registry

    runner = _runner_dir()
    cfg, version = trained_registry
    with np.load(Registry(cfg.registry_path).path(version) / "test_set.npz") as z:
        x, y = z["x_int8"].reshape(len(z["x_int8"]), -1)[:20], z["y"][:20]
    data = tmp_path / "data" / "ad01"
    data.mkdir(parents=True)
    rows = []
    for i, vec in enumerate(x):
        (data / f"v{i:04d}.bin").write_bytes(vec.astype(np.int8).tobytes())
        rows.append(f"v{i:04d}.bin,2,{int(y[i] >= np.median(y))},{x.shape[1]},{x.shape[1]}")
    (data / "y_labels.csv").write_text("\n".join(rows) + "\n")
    devices = tmp_path / "devices.yaml"
    devices.write_text(textwrap.dedent("""\
        - name: tinyship
          type: dut
          baud: 115200
          check_name: tinyship
          usb:
            0x2341: 0x805A
        """))
    with VirtualBoard(cfg.registry_path, version, pty=True, state_dir=tmp_path / "st") as board:
        assert board.pty_path is not None
        proc = subprocess.run(
            [sys.executable, "-m", "tinyship.hil.mlcommons_runner", "--port", board.pty_path,
             "--runner", str(runner), "--", "--device_list", str(devices),
             "--dataset_path", str(tmp_path / "data"), "--mode", "a",
             "--test_script", str(runner / "tests_accuracy.yaml")],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)  # logs here
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Device model retrieved: ad01" in out
    assert out.count("m-results    : [") == len(x)
    assert "ulp-mlperf: Top 1% =" in out
