"""The virtual board: the firmware core (C++, via ctypes) + TFLite Micro behind a serial URL.

Frames are built and decoded with the core's own codec (`ts_frame_encode`/`ts_frame_decode`),
so these tests exercise the same bytes a board sends. Every read has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import select
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import serial

from tinyship.config import BoardSection, Config
from tinyship.device.transport import Transport
from tinyship.device.virtual import Faults, VirtualBoard, _core, parse_faults
from tinyship.hil.mlperf import MlperfDut

REPO = Path(__file__).resolve().parents[1]
BANNER_RE = re.compile(rb"tinyship ready proto=2 fw=\S+ model=(\S+) board=(\S+) selftest=(\S+)")
PING, HELLO, INFER = 0x01, 0x02, 0x03
ERROR = 0xFF
TIMEOUT = 3.0


# --- helpers -------------------------------------------------------------------------------
class Link:
    """A pyserial port plus a tiny frame splitter (text outside frames is kept apart)."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, timeout=0.05)
        self.text = b""
        self.raw = b""
        self._in_frame = False
        self._body = b""
        self.bodies: list[bytes] = []

    def close(self) -> None:
        self.port.close()

    def _pump(self) -> int:
        data = self.port.read(max(1, self.port.in_waiting))
        self.raw += data
        for b in data:
            if b == 0:
                if self._in_frame and self._body:
                    self.bodies.append(self._body)
                    self._body = b""
                    self._in_frame = False
                else:
                    self._in_frame = True
            elif self._in_frame:
                self._body += bytes([b])
            else:
                self.text += bytes([b])
        return len(data)

    def wait_banner(self, timeout: float = TIMEOUT) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = BANNER_RE.search(self.text)
            if m and self.text[m.end():].startswith(b"\r\n"):
                self.text = self.text[m.end() + 2 :]
                return m
            self._pump()
        raise AssertionError(f"no boot banner within {timeout} s; text so far {self.text!r}")

    def frames(self, n: int, timeout: float = TIMEOUT) -> list[bytes]:
        """The next n frame bodies (fewer if the deadline passes)."""
        deadline = time.monotonic() + timeout
        while len(self.bodies) < n and time.monotonic() < deadline:
            self._pump()
        out, self.bodies = self.bodies[:n], self.bodies[n:]
        return out

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._pump()

    def request(self, cmd: int, seq: int, payload: bytes = b"",
                timeout: float = TIMEOUT) -> tuple[int, int, bytes]:
        self.port.write(_core.frame_encode(cmd, seq, payload))
        got = self.frames(1, timeout)
        assert got, f"no reply to command {cmd:#x} within {timeout} s"
        st, rcmd, rseq, body = _core.frame_decode(got[0])
        assert st == 0, f"reply does not decode: {_core.status_str(st)}"
        return rcmd, rseq, body


def tlvs(payload: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 2 <= len(payload):
        tag, n = payload[i], payload[i + 1]
        out[tag] = payload[i + 2 : i + 2 + n]
        i += 2 + n
    return out


@pytest.fixture
def board_factory(trained_registry: tuple[Config, str],
                  tmp_path: Path) -> Iterator[Callable[..., VirtualBoard]]:
    cfg, version = trained_registry
    boards: list[VirtualBoard] = []

    def make(**kw: Any) -> VirtualBoard:
        kw.setdefault("boot_delay_s", 0.05)
        kw.setdefault("state_dir", tmp_path / "state")
        b = VirtualBoard(cfg.registry_path, version, **kw)
        b.start()
        boards.append(b)
        return b

    yield make
    for b in boards:
        b.stop()
        assert not b.running


@pytest.fixture
def connect() -> Iterator[Callable[[VirtualBoard], Link]]:
    links: list[Link] = []

    def make(board: VirtualBoard) -> Link:
        link = Link(board.url)
        links.append(link)
        return link

    yield make
    for link in links:
        link.close()


def load_test_set(cfg: Config, version: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    vdir = cfg.registry_path / version
    d = np.load(vdir / "test_set.npz")
    manifest = json.loads((vdir / "manifest.json").read_text())
    return d["x_int8"], d["reference_int8"], manifest


# --- behaviour -----------------------------------------------------------------------------
def test_banner_after_connect(board_factory: Callable[..., VirtualBoard],
                              connect: Callable[[VirtualBoard], Link],
                              trained_registry: tuple[Config, str]) -> None:
    board = board_factory()
    assert board.url.startswith("socket://127.0.0.1:")
    m = connect(board).wait_banner()
    assert m.group(1) == trained_registry[1].encode()
    assert m.group(2) == b"virtual-nano33ble"
    assert m.group(3) == b"pass"


def test_hello_reports_registry_identity(board_factory: Callable[..., VirtualBoard],
                                         connect: Callable[[VirtualBoard], Link],
                                         trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    manifest = json.loads((cfg.registry_path / version / "manifest.json").read_text())
    link = connect(board_factory())
    link.wait_banner()
    cmd, seq, payload = link.request(HELLO, 7)
    assert (cmd, seq) == (HELLO | 0x80, 7)
    t = tlvs(payload)
    assert t[0x03].decode() == version
    assert t[0x04].decode() == manifest["model"]["sha256"]
    assert t[0x05] == bytes([_core.TS_CRC_OK])
    assert struct.unpack("<I", t[0x06])[0] == manifest["model"]["crc32"]
    assert t[0x08] == b"virtual-nano33ble"
    status, vectors, failed, _diff = struct.unpack("<BHHB", t[0x16])
    assert status == 0 and vectors >= 1 and failed == 0xFFFF
    assert struct.unpack("<I", t[0x1A])[0] == int(np.prod(manifest["model"]["input"]["shape"]))
    assert t[0x15] == bytes([_core.TS_RESET_PIN])  # the port open reset the board


def test_infer_matches_tflm_reference_and_latency_model(
        board_factory: Callable[..., VirtualBoard], connect: Callable[[VirtualBoard], Link],
        trained_registry: tuple[Config, str]) -> None:
    x, ref, manifest = load_test_set(*trained_registry)
    n, n_out = 8, ref.shape[1]
    board = board_factory()
    link = connect(board)
    link.wait_banner()
    payload = struct.pack("<H", n) + x[:n].astype(np.int8).tobytes()
    cmd, _, body = link.request(INFER, 3, payload)
    assert cmd == INFER | 0x80
    assert struct.unpack_from("<H", body)[0] == n
    macs = manifest["model"]["macs"]
    base = round(50 + macs * 4.0 / 64_000_000 * 1e6)  # documented defaults (latency.py)
    off = 2
    for i in range(n):
        (lat,) = struct.unpack_from("<I", body, off)
        out = np.frombuffer(body[off + 4 : off + 4 + n_out], dtype=np.int8)
        off += 4 + n_out
        np.testing.assert_array_equal(out, ref[i])
        jitter = zlib.crc32(x[i].astype(np.int8).tobytes()) % 5 - 2
        assert lat == base + jitter
    assert off == len(body)


def test_link_is_paced_to_the_baud_rate(board_factory: Callable[..., VirtualBoard],
                                        connect: Callable[[VirtualBoard], Link]) -> None:
    link = connect(board_factory(baud=115200))
    link.wait_banner()
    payload = bytes(range(1, 256)) * 4  # 1020 bytes, both ways
    req = _core.frame_encode(PING, 1, payload)
    t0 = time.monotonic()
    cmd, _, body = link.request(PING, 1, payload)
    elapsed = time.monotonic() - t0
    assert cmd == PING | 0x80 and body == payload
    wire = 2 * len(req)  # the reply frame has the same size
    assert elapsed >= 0.9 * wire * 10 / 115200, elapsed


def test_reconnect_resets_and_counts_boots_persistently(
        board_factory: Callable[..., VirtualBoard], connect: Callable[[VirtualBoard], Link],
        tmp_path: Path, trained_registry: tuple[Config, str]) -> None:
    board = board_factory()

    def boot_count() -> int:
        link = connect(board)
        link.wait_banner()
        _, _, payload = link.request(HELLO, 1)
        link.close()
        return int(struct.unpack("<I", tlvs(payload)[0x14])[0])

    first = boot_count()
    second = boot_count()
    assert second == first + 1
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert state["boot_count"] == second
    assert state["active"] == "a"
    assert state["slots"]["a"]["model_version"] == trained_registry[1]
    assert state["slots"]["b"] is None
    board.stop()
    again = board_factory()  # same state folder: the count survives a "power cycle"
    assert again.state.boot_count == second + 1


def test_state_written_atomically(board_factory: Callable[..., VirtualBoard],
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    replaced: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: Any, dst: Any) -> None:
        replaced.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    board_factory()
    state = tmp_path / "state" / "state.json"
    assert any(dst == str(state) and Path(src).parent == state.parent for src, dst in replaced)
    assert [p.name for p in state.parent.iterdir()] == ["state.json"]  # no temp files left
    json.loads(state.read_text())


def with_target_units(root: Path, version: str, mean: float, tscale: float) -> dict[str, Any]:
    """Give a registry copy's output record target units (as a model predicting the
    standardized target has); returns that record."""
    path = root / version / "manifest.json"
    manifest = json.loads(path.read_text())
    out: dict[str, Any] = manifest["model"]["output"]
    out.update(target_mean=mean, target_scale=tscale)
    path.write_text(json.dumps(manifest))
    return out


def test_target_units_reach_info_and_mlperf_results(
        registry_copy: Callable[[], tuple[Path, str]], trained_registry: tuple[Config, str],
        tmp_path: Path) -> None:
    from tinyship.convert.runtimes import to_target_units

    root, version = registry_copy()
    out = with_target_units(root, version, 60.0, 8.0)
    x, ref, _ = load_test_set(*trained_registry)
    with VirtualBoard(root, version, boot_delay_s=0.05, state_dir=tmp_path / "st") as board:
        link = Link(board.url)
        try:
            link.wait_banner()
            t = tlvs(link.request(HELLO, 1)[2])
            assert struct.unpack("<ff", t[0x1C] + t[0x1D]) == (60.0, 8.0)
            link.port.write(f"db load {x.shape[1]}%db {x[0].astype(np.int8).tobytes().hex()}%"
                            "infer 1 0%".encode())
            deadline = time.monotonic() + TIMEOUT
            while not re.search(rb"m-results-\[[^\]]*\]\r\nm-ready", link.text):
                assert time.monotonic() < deadline, link.text
                link._pump()
        finally:
            link.close()
    m = re.search(rb"m-results-\[([^\]]*)\]", link.text)
    assert m is not None
    printed = np.array([float(v) for v in m.group(1).split(b",")])
    want = to_target_units(ref[0], out)
    np.testing.assert_allclose(printed, want, rtol=1e-6, atol=1e-3)
    plain = (ref[0].astype(np.float64) - out["zero_point"]) * out["scale"]
    assert np.all(np.abs(printed - plain) > 1.0)  # not the bare dequantized output


# --- the MLCommons tiny runner's rules ---------------------------------------------------------
@pytest.fixture
def dut_for() -> Iterator[Callable[[VirtualBoard], MlperfDut]]:
    """A board in MLPerf mode, spoken to as the MLCommons runner speaks to it."""
    transports: list[Transport] = []

    def make(board: VirtualBoard) -> MlperfDut:
        transport = Transport(board.url)
        transport.open()
        transports.append(transport)
        return MlperfDut(transport)

    yield make
    for t in transports:
        t.close()


def test_command_sent_while_the_board_boots_is_answered(
        board_factory: Callable[..., VirtualBoard],
        connect: Callable[[VirtualBoard], Link]) -> None:
    # The runner's name check writes `name%` the moment it opens the port, which resets the
    # board: the bytes wait (USB CDC holds them) and are answered after the banner.
    link = connect(board_factory(boot_delay_s=0.3))
    link.port.write(b"name%")
    link.port.write(_core.frame_encode(PING, 1, b"boot"))
    link.wait_banner()
    deadline = time.monotonic() + TIMEOUT
    while b"m-ready\r\n" not in link.text and time.monotonic() < deadline:
        link._pump()
    assert link.text.startswith(b"m-name-dut-[tinyship]\r\nm-ready\r\n"), link.text
    (body,) = link.frames(1)
    assert _core.frame_decode(body)[1:] == (PING | 0x80, 1, b"boot")


def test_mlperf_profile_reports_the_configured_benchmark_name(
        board_factory: Callable[..., VirtualBoard],
        dut_for: Callable[[VirtualBoard], MlperfDut], tmp_path: Path) -> None:
    profile = "ULPMark for tinyML Firmware V0.0.1"
    assert dut_for(board_factory()).identity() == {
        "name": "tinyship", "profile": profile, "model": "ad01"}  # the default, not v0001
    kws = BoardSection.model_validate({"mlperf_model": "kws01"})
    assert dut_for(board_factory(board=kws, state_dir=tmp_path / "kws")).identity() == {
        "name": "tinyship", "profile": profile, "model": "kws01"}


def test_mlperf_time_at_115200_matches_the_unpaced_link(
        board_factory: Callable[..., VirtualBoard], dut_for: Callable[[VirtualBoard], MlperfDut],
        trained_registry: tuple[Config, str], tmp_path: Path) -> None:
    x, _, _ = load_test_set(*trained_registry)
    vec = x[0].astype(np.int8).tobytes()

    def infer_us(baud: int) -> tuple[int, int]:
        board = board_factory(baud=baud, state_dir=tmp_path / f"b{baud}")
        dut = dut_for(board)
        dut.load(vec)
        times = [dut.infer(1, 0).elapsed_us for _ in range(5)]
        assert all(t is not None for t in times)
        return min(t for t in times if t is not None), board.latency.latency_us(vec)

    paced, modelled = infer_us(115200)
    unpaced, _ = infer_us(0)
    assert unpaced >= modelled and paced >= modelled
    # Before the flush: the ~50 bytes of lines queued around the first timestamp were still
    # being sent while the inferences were timed, 4.4 ms at 115200.
    assert paced - modelled < 1000, (paced, modelled)
    assert abs(paced - unpaced) < 1000, (paced, unpaced)


def test_realtime_board_keeps_its_clock_with_the_wall_clock(
        board_factory: Callable[..., VirtualBoard], dut_for: Callable[[VirtualBoard], MlperfDut],
        trained_registry: tuple[Config, str], tmp_path: Path) -> None:
    x, _, _ = load_test_set(*trained_registry)
    n, latency_us = 100, 3000  # 0.3 s of modelled inferences, far slower than the host

    def run(realtime: bool) -> tuple[float, float]:
        board = board_factory(baud=0, realtime=realtime, overhead_us=latency_us,
                              jitter_max_us=0, state_dir=tmp_path / f"rt{realtime}")
        dut = dut_for(board)
        dut.load(x[0].astype(np.int8).tobytes())
        time.sleep(0.3)  # idle time after boot must not count as a lead over the wall clock
        t0 = time.monotonic()
        elapsed = dut.infer(n, 0).elapsed_us
        wall = time.monotonic() - t0
        assert elapsed is not None
        return elapsed / 1e6, wall

    board_s, wall_s = run(True)
    assert board_s >= n * latency_us / 1e6
    assert 0.9 * board_s <= wall_s <= board_s + 0.25, (board_s, wall_s)
    fast_board_s, fast_wall_s = run(False)  # the default: as fast as the host computes
    assert fast_board_s >= n * latency_us / 1e6
    assert fast_wall_s < 0.5 * fast_board_s, (fast_board_s, fast_wall_s)


def test_mlperf_stand_in_reads_what_the_core_prints(
        board_factory: Callable[..., VirtualBoard], dut_for: Callable[[VirtualBoard], MlperfDut],
        trained_registry: tuple[Config, str]) -> None:
    from tinyship.convert.runtimes import to_target_units

    x, ref, manifest = load_test_set(*trained_registry)
    dut = dut_for(board_factory(boot_delay_s=0.2))
    # The first reply starts with the boot banner (a stray line), as the runner sees it.
    lines = dut.command("name")
    assert lines[0].startswith("tinyship ready proto=2") and lines[-1] == "m-ready"
    dut.load(x[1].astype(np.int8).tobytes())
    reply = dut.infer(3, 2)
    assert reply.start_us is not None and reply.elapsed_us is not None
    assert reply.elapsed_us >= 3 * 50  # three inferences of at least the modelled overhead
    assert reply.results is not None
    np.testing.assert_allclose(reply.results, to_target_units(ref[1], manifest["model"]["output"]),
                               rtol=1e-6, atol=1e-3)
    stamp = dut.command("timestamp")
    assert len(stamp) == 2 and int(stamp[0].removeprefix("m-lap-us-")) > reply.start_us


# --- faults --------------------------------------------------------------------------------
def test_faults_spec_parses_and_round_trips() -> None:
    f = parse_faults("corrupt_rx=0.01,drop_tx=0.005,garbage=0.05,reset_after=20,"
                     "hang_after=50,wrong_version,wrong_hash,wrong_prediction=0.1,seed=1")
    assert f == Faults(corrupt_rx=0.01, drop_tx=0.005, garbage=0.05, reset_after=20,
                       hang_after=50, wrong_version="-wrong", wrong_hash=True,
                       wrong_prediction=0.1, seed=1)
    assert parse_faults(f.to_spec()) == f
    assert parse_faults("wrong_at=1/4,corrupt=0.5").wrong_at == (1, 4)
    assert parse_faults("") == Faults()
    for bad in ("bogus=1", "corrupt_rx=2", "hang_after=x", "drop_tx", "wrong_at=a"):
        with pytest.raises(ValueError):
            parse_faults(bad)


def test_corrupted_replies_fail_crc(board_factory: Callable[..., VirtualBoard],
                                   connect: Callable[[VirtualBoard], Link]) -> None:
    board = board_factory(baud=0, faults=Faults(corrupt_tx=0.02, seed=3))
    link = connect(board)
    for seq in range(30):
        link.port.write(_core.frame_encode(PING, seq, b"x" * 60))
        link.drain(0.01)
    link.drain(0.3)
    statuses = [_core.frame_decode(b)[0] for b in link.bodies]
    assert board.stats.corrupted_tx > 0
    assert _core.TS_ERR_BAD_CRC in statuses  # a flipped bit inside a reply fails its CRC


def test_dropped_bytes(board_factory: Callable[..., VirtualBoard],
                      connect: Callable[[VirtualBoard], Link]) -> None:
    board = board_factory(baud=0, faults=Faults(drop_tx=0.05, drop_rx=0.02, seed=5))
    link = connect(board)
    link.drain(0.2)
    link.raw = b""
    sent = 0
    for seq in range(20):
        frame = _core.frame_encode(PING, seq, b"abcdefghij" * 3)
        link.port.write(frame)
        sent += len(frame)
        link.drain(0.01)
    link.drain(0.3)
    assert board.stats.dropped_tx > 0 and board.stats.dropped_rx > 0
    assert len(link.raw) < sent  # replies (same size as requests) lost bytes
    good = [b for b in link.bodies if _core.frame_decode(b)[0] == 0
            and _core.frame_decode(b)[1] == PING | 0x80]
    assert len(good) < 20


def test_garbage_between_frames(board_factory: Callable[..., VirtualBoard],
                                connect: Callable[[VirtualBoard], Link]) -> None:
    board = board_factory(faults=Faults(garbage=1.0, seed=2))
    link = connect(board)
    link.wait_banner()
    cmd, _, body = link.request(PING, 9, b"ok")  # frames themselves are intact
    assert (cmd, body) == (PING | 0x80, b"ok")
    link.drain(0.2)
    assert link.text  # bytes after the frame that are no frame
    assert board.stats.garbage_bursts >= 1 and board.stats.garbage_bytes == len(link.text)


def test_wrong_version_and_hash_in_hello(board_factory: Callable[..., VirtualBoard],
                                         connect: Callable[[VirtualBoard], Link],
                                         trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    sha = json.loads((cfg.registry_path / version / "manifest.json").read_text())["model"]["sha256"]
    link = connect(board_factory(faults=parse_faults("wrong_version=v9999,wrong_hash")))
    link.wait_banner()
    t = tlvs(link.request(HELLO, 1)[2])
    assert t[0x03] == b"v9999"
    assert len(t[0x04]) == 64 and t[0x04].decode() != sha


def test_bad_model_crc_refuses_inference(board_factory: Callable[..., VirtualBoard],
                                         connect: Callable[[VirtualBoard], Link],
                                         trained_registry: tuple[Config, str]) -> None:
    x, _, _ = load_test_set(*trained_registry)
    link = connect(board_factory(faults=Faults(bad_model_crc=True)))
    link.wait_banner()
    assert tlvs(link.request(HELLO, 1)[2])[0x05] == bytes([_core.TS_CRC_MISMATCH])
    cmd, _, body = link.request(INFER, 2, struct.pack("<H", 1) + x[0].tobytes())
    assert cmd == ERROR and body[0] == 10  # TS_ERR_MODEL_INVALID


def test_wrong_prediction_differs_from_reference(board_factory: Callable[..., VirtualBoard],
                                                 connect: Callable[[VirtualBoard], Link],
                                                 trained_registry: tuple[Config, str]) -> None:
    x, ref, _ = load_test_set(*trained_registry)
    n, n_out = 4, ref.shape[1]
    board = board_factory(faults=Faults(wrong_at=(1, 3)))
    link = connect(board)
    link.wait_banner()
    _, _, body = link.request(INFER, 1, struct.pack("<H", n) + x[:n].tobytes())
    outs = [np.frombuffer(body[2 + i * (4 + n_out) + 4 : 2 + (i + 1) * (4 + n_out)], np.int8)
            for i in range(n)]
    for i in range(n):
        same = np.array_equal(outs[i], ref[i])
        assert same == (i not in (1, 3)), i
    assert board.stats.wrong_predictions == 2


def test_hang_after_n_frames(board_factory: Callable[..., VirtualBoard],
                             connect: Callable[[VirtualBoard], Link]) -> None:
    board = board_factory(faults=Faults(hang_after=2))
    link = connect(board)
    link.wait_banner()
    link.request(PING, 1, b"a")
    link.request(PING, 2, b"b")
    link.port.write(_core.frame_encode(PING, 3, b"c"))
    assert link.frames(1, timeout=1.0) == []
    assert board.stats.hangs == 1
    link.close()
    again = connect(board)  # reopening the port resets the board: it answers again
    again.wait_banner()
    assert again.request(PING, 4, b"d")[2] == b"d"


def test_reset_mid_session(board_factory: Callable[..., VirtualBoard],
                           connect: Callable[[VirtualBoard], Link]) -> None:
    board = board_factory(faults=Faults(reset_after=2))
    link = connect(board)
    link.wait_banner()
    link.request(PING, 1, b"a")
    link.request(PING, 2, b"b")
    link.wait_banner()  # rebooted without a reconnect
    assert board.stats.fault_resets == 1
    t = tlvs(link.request(HELLO, 3)[2])
    assert t[0x15] == bytes([_core.TS_RESET_WATCHDOG])


def test_faults_are_deterministic_with_a_seed(board_factory: Callable[..., VirtualBoard],
                                              connect: Callable[[VirtualBoard], Link],
                                              tmp_path: Path) -> None:
    def run(state: str) -> bytes:
        board = board_factory(baud=0, faults=Faults(corrupt_tx=0.05, seed=11),
                              state_dir=tmp_path / state)
        link = connect(board)
        link.drain(0.3)
        link.raw = b""
        for seq in range(5):
            link.port.write(_core.frame_encode(PING, seq, b"z" * 40))
            link.drain(0.05)
        link.drain(0.2)
        return link.raw

    assert run("s1") == run("s2")


# --- the library and the CLI ---------------------------------------------------------------
def test_core_constants_match_header() -> None:
    header = (REPO / "firmware/lib/tinyship_core/src/tinyship_core.h").read_text()
    assert f"#define TS_MAX_PAYLOAD {_core.TS_MAX_PAYLOAD}u" in header
    assert "TS_CRC_OK = 1" in header and "TS_RESET_WATCHDOG = 3" in header
    assert _core.crc32(b"123456789") == zlib.crc32(b"123456789")
    lib = _core.find_core_lib()
    assert lib.is_file()
    assert _core.sources_hash()[:16] in str(lib) or "TINYSHIP_CORE_LIB" in os.environ


def test_cli_prints_url_first(trained_registry: tuple[Config, str], tmp_path: Path) -> None:
    cfg, version = trained_registry
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyship", "emulator", "--registry", str(cfg.registry_path),
         "--model", version, "--boot-delay", "0.05", "--state", str(tmp_path / "st"),
         "--realtime", "--reset-on-open"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "emulator printed nothing within 60 s"
        url = proc.stdout.readline().decode().strip()
        assert url.startswith("socket://127.0.0.1:"), url
        link = Link(url)
        try:
            assert link.wait_banner().group(1) == version.encode()
        finally:
            link.close()
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        assert "MLPerf model ad01, real time, resets when a host connects" in \
            proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_cli_rejects_bad_fault_spec(trained_registry: tuple[Config, str],
                                    tmp_path: Path) -> None:
    cfg, version = trained_registry
    proc = subprocess.run(
        [sys.executable, "-m", "tinyship", "emulator", "--registry", str(cfg.registry_path),
         "--model", version, "--faults", "bogus=1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "unknown fault 'bogus'" in proc.stderr


def test_pty_serves_the_same_protocol(board_factory: Callable[..., VirtualBoard]) -> None:
    board = board_factory(pty=True)
    assert board.pty_path is not None and board.url == board.pty_path
    link = Link(board.url)  # pyserial flushes input on open: the power-on banner is gone
    try:
        link.port.write(b"ping\n")
        deadline = time.monotonic() + TIMEOUT
        while b"pong\r\n" not in link.text and time.monotonic() < deadline:
            link._pump()
        assert b"pong\r\n" in link.text
        assert link.request(PING, 5, b"pty")[2] == b"pty"
    finally:
        link.close()
