"""A virtual tinyship board: the firmware's own core behind a serial URL.

The board runs `firmware/lib/tinyship_core` compiled for the host (see `_core`), with the
real TFLite Micro runtime as its inference callback, a virtual microsecond clock driven by
the latency model (`latency`), persistent storage in a folder (`state`), and optional
fault injection (`faults`). It serves:

* `socket://127.0.0.1:PORT` (default): a TCP server; a new connection is a port open, and
  the board resets as an Arduino does when DTR toggles: boot delay, re-init, boot banner.
  Bytes the host sends during the boot are kept and processed after the banner, as a USB
  CDC board's host driver holds them until the board's USB stack is up; a command sent
  right after opening the port is answered. A second connection replaces the first (the
  old one is closed).
* a pty (`pty=True`): `pty_path` is the slave device; it boots once at `start()` (a pty
  cannot tell when it is opened), later resets come only from faults.

Link: at `baud` the board is on a modelled UART (`link.UartLink`): every byte takes 10 bit
times in each direction (8N1, full duplex), and bytes arriving while the core is busy wait
in a `rx_buffer`-byte receive buffer (256, as the Arduino cores') or are lost when it is
full; INFO reports the link (a UART at `baud`, window `rx_buffer`) and `link_stats()`
measures it on the modelled clock, which `time_scale` slows against the wall clock for
benchmarks. `baud=0` disables pacing: a byte stream, reported as such. The core's flush
hook waits until every byte written has crossed the wire, so MLPerf timestamps never
include transmit time.

Time: the board's clock is real time except that each inference takes exactly its modelled
latency (`VirtualClock`), so it runs ahead of the wall clock when the host computes faster
than the modelled board. `realtime=True` makes the modelled time drive the pace: the board
sleeps until the wall clock catches up (within `REALTIME_SLACK_US`), so a benchmark that
runs 10 s by the board's clock also takes 10 s of wall time (the MLCommons runner checks
both). One thread serves the port; `stop()` joins it with a bound.

Firmware: the board is built with one registry version (the constructor's), and has a ROM
(`bootloader`) that at every boot runs a full firmware image uploaded into its application
region instead, if there is a valid one, or stays in its bootloader when an upload left
the region invalid. `TOUCH` (the bootloader request) is taken out of the host's bytes
before they reach the modelled wire, as the USB stack of an Arduino core takes the
1200-baud touch before the sketch sees anything. Uploading a full image leaves the model
slots alone: a confirmed slot model keeps running (see `bootloader`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import select
import socket
import tempfile
import threading
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import numpy as np

from tinyship.config import BoardSection
from tinyship.device.bootloader_protocol import TOUCH
from tinyship.device.protocol import LinkInfo, LinkKind
from tinyship.device.virtual import _core
from tinyship.device.virtual.bootloader import (
    APP_FILE,
    APP_REGION_BYTES,
    RomBootloader,
    banner,
    rom_choice,
)
from tinyship.device.virtual.faults import Faults
from tinyship.device.virtual.flash import (
    DEFAULT_SLOT_BYTES,
    FLASH_FILE,
    NorRegion,
    PowerRail,
    SlotFlash,
    board_geometry,
)
from tinyship.device.virtual.fwimage import Firmware, VirtualImageError, load_firmware
from tinyship.device.virtual.latency import LatencyModel
from tinyship.device.virtual.link import DEFAULT_RX_BUFFER, LinkStats, UartLink
from tinyship.device.virtual.nor import CutMode
from tinyship.device.virtual.state import BoardState
from tinyship.errors import DeviceError

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200
#: The boards' `custom_tinyship_arena_bytes` (platformio.ini; tests keep them equal): the
#: tensor arena of a firmware with model slots, so a retrained model of another size fits.
SLOT_ARENA_BYTES = 32 * 1024
DEFAULT_BOOT_DELAY_S = 0.3
GOLDEN_TOLERANCE_LSB = 0  # as on boards (main.cpp; PROTOCOL.md section 4)
#: In real-time mode the board's clock may run this far ahead of the wall clock before the
#: board sleeps (one sleep per few inferences instead of one per inference).
REALTIME_SLACK_US = 2000
#: In real-time mode, warn once when the host cannot keep up by this much.
REALTIME_BEHIND_WARN_US = 100_000
_POLL_S = 0.05
#: Shortest wait of the serving thread while the modelled UART has work queued.
_LINK_TICK_S = 0.0005
_JOIN_TIMEOUT_S = 5.0
_GARBAGE_MAX = 16


@dataclass
class BoardStats:
    """Counters of what the board did and which faults it injected (since `start()`)."""

    boots: int = 0
    connections: int = 0
    bytes_rx: int = 0
    bytes_tx: int = 0
    frames_tx: int = 0
    inferences: int = 0
    corrupted_rx: int = 0
    corrupted_tx: int = 0
    dropped_rx: int = 0
    dropped_tx: int = 0
    garbage_bursts: int = 0
    garbage_bytes: int = 0
    fault_resets: int = 0
    hangs: int = 0
    ignored_rx: int = 0
    wrong_predictions: int = 0
    #: Host bytes lost because the modelled UART's receive buffer was full (core busy).
    overflow_rx: int = 0


def firmware_ops(profile: str, factory_ops: Sequence[str] = ()) -> list[int]:
    """Operator ids the virtual firmware's op resolver registers, as a board's default
    build does: the factory model's operators and those of every model family tinyship
    trains (`slot_image.FAMILY_OPS`), less what the profile cannot run bit-exactly. A slot
    model needing another operator is refused."""
    from tinyship.device.slot_image import FAMILY_OPS, OP_IDS
    from tinyship.profiles import get_profile

    try:
        supported = get_profile(profile).supported_ops
    except KeyError:
        supported = frozenset(OP_IDS)
    names = dict.fromkeys([*factory_ops, *FAMILY_OPS])
    return sorted(OP_IDS[n] for n in names if n in OP_IDS and n in supported)


class VirtualClock:
    """Microseconds on the board: wall time, except that an inference takes exactly its
    modelled latency instead of the time the host spent on it.

    `inference_done(started_us, us)` ends an inference callback that began at `real_us()`
    = `started_us`: the board's clock gains `us` minus the host's time, so the board's time
    is always the wall time since the clock started plus `ahead_us()`, whatever happens
    between inferences (transmitting, idling, warm-up loops). The core reads the clock right
    before and after each timed inference; when that read comes straight after the callback
    (no other platform call in between: `interrupt()`), it returns exactly `us` after the
    read before the callback, so a reported latency is exact. Readings never go backwards.
    """

    def __init__(self) -> None:
        self._t0 = time.monotonic_ns()
        self._offset = 0
        self._last = 0
        self._pinned: int | None = None
        self._read_since_inference = True

    def real_us(self) -> int:
        """Wall time since the clock started (µs)."""
        return (time.monotonic_ns() - self._t0) // 1000

    def now_us(self) -> int:
        value = max(self.real_us() + self._offset, self._last)
        if self._pinned is not None:  # the read that ends a timed inference
            value = max(self._pinned, self._last)
            self._pinned = None
        self._last = value
        self._read_since_inference = True
        return value

    def inference_done(self, started_us: int, us: int) -> None:
        self._offset += us - (self.real_us() - started_us)
        # Exact only for an inference the core timed, i.e. read the clock just before (not
        # the second of a warm-up or self-test loop, whose previous read is long gone).
        self._pinned = self._last + us if self._read_since_inference else None
        self._read_since_inference = False

    def advance(self, us: int) -> None:
        """The board was busy for `us` (a flash erase or program): its clock gains it."""
        self._offset += us
        self._pinned = None

    def interrupt(self) -> None:
        """Another platform call came first: the next read is not the end of an inference."""
        self._pinned = None

    def ahead_us(self) -> int:
        """How far the board's clock is ahead of the wall clock (negative: behind, when the
        host computes slower than the modelled board)."""
        return self._offset


class VirtualBoard:
    """A tinyship board emulated on the host; see the module docstring.

    >>> with VirtualBoard(Path("models"), "v0001") as board:   # doctest: +SKIP
    ...     port = serial.serial_for_url(board.url, timeout=2)
    """

    def __init__(
        self,
        registry_root: Path | str,
        version: str | None = None,
        *,
        board: BoardSection | None = None,
        baud: int = DEFAULT_BAUD,
        faults: Faults | None = None,
        state_dir: Path | str | None = None,
        boot_delay_s: float = DEFAULT_BOOT_DELAY_S,
        host: str = "127.0.0.1",
        port: int = 0,
        pty: bool = False,
        overhead_us: int | None = None,
        jitter_max_us: int | None = None,
        realtime: bool = False,
        rx_buffer: int = DEFAULT_RX_BUFFER,
        time_scale: float = 1.0,
        slots: bool = True,
        slot_bytes: int = DEFAULT_SLOT_BYTES,
        reset_on_open: bool = True,
    ) -> None:
        if baud < 0:
            raise ValueError("baud must be >= 0 (0 = unpaced)")
        if rx_buffer < 1:
            raise ValueError("rx_buffer must be >= 1 byte")
        if not time_scale >= 1.0:
            raise ValueError("time_scale must be >= 1 (1: real time)")
        if boot_delay_s < 0:
            raise ValueError("boot_delay_s must be >= 0")
        #: The firmware the board was built with; `firmware` is the one running (an uploaded
        #: full image's, when the ROM boots one).
        self.built_firmware = load_firmware(registry_root, version)
        self.firmware = self.built_firmware
        self.board = board or BoardSection.model_validate({})
        self.baud = baud
        #: Receive buffer of the modelled UART (bytes; `link.UartLink`), paced links only.
        self.rx_buffer = rx_buffer
        #: The modelled UART runs this many times slower than the wall clock (benchmarks).
        self.time_scale = time_scale
        self.faults = faults or Faults()
        self.boot_delay_s = boot_delay_s
        #: The modelled time drives the pace (see the module docstring).
        self.realtime = realtime
        self._warned_behind = False
        self._host = host
        self._port = port
        self._use_pty = pty
        self._latency_kw: dict[str, Any] = {"clock_hz": self.board.clock_hz,
                                            "cycles_per_mac": self.board.cycles_per_mac}
        if overhead_us is not None:
            self._latency_kw["overhead_us"] = overhead_us
        if jitter_max_us is not None:
            self._latency_kw["jitter_max_us"] = jitter_max_us
        self.latency = self._latency_of(self.firmware)
        self._tmp_state: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp_state = tempfile.TemporaryDirectory(prefix="tinyship-vboard-")
            state_dir = self._tmp_state.name
        self.state = BoardState(Path(state_dir))
        self.stats = BoardStats()
        self.clock = VirtualClock()

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._pty_master: int | None = None
        self._pty_slave: int | None = None
        self.pty_path: str | None = None
        self._url: str | None = None
        self._runner: Any = None
        self._core_mem: Any = None
        self._core: ctypes.c_void_p = ctypes.c_void_p()
        self._keep: list[Any] = []  # objects the C core references
        self._in_init = False
        self._boot_index = 0
        self._rng_link = np.random.default_rng(0)
        self._rng_board = np.random.default_rng(0)
        self._infer_index = 0
        self._frames_this_boot = 0
        self._tx_in_frame = False
        self._hung = False
        self._reset_pending = False
        self._link: UartLink | None = self._new_link()
        #: A new connection resets the board (an Arduino whose DTR line resets it). False:
        #: a USB CDC board (nano33ble, RP2040, ESP32-S3 native USB) that keeps running,
        #: so a trial model survives the host reconnecting to confirm it.
        self.reset_on_open = reset_on_open
        self._reset_reason = _core.TS_RESET_WATCHDOG
        f = self.faults
        #: Power cuts of every flash region, counted together (`flash.PowerRail`).
        self.power = PowerRail(cut_at=f.power_cut_at, cut_probability=f.power_cut,
                               seed=f.seed)
        cut_mode = cast(CutMode, f.power_cut_mode)  # Faults checked it
        # Flash is persisted in a state folder the caller chose; a temporary one dies with
        # the board, so its flash is not written through (a sweep makes thousands of ops).
        persist = self._tmp_state is None
        #: Model slots in simulated NOR flash (`flash.SlotFlash`), persisted in the state
        #: folder; None when the firmware is built without slots.
        self.flash: SlotFlash | None = None
        if slots:
            self.flash = SlotFlash(
                self.board.name, self.power, slot_bytes=slot_bytes,
                path=self.state.dir / FLASH_FILE if persist else None,
                cut_mode=cut_mode, seed=f.seed, on_busy=self._flash_busy)
        #: The application region, where full firmware images go (`bootloader`).
        self.app = NorRegion(
            board_geometry(self.board.name).with_size(APP_REGION_BYTES), self.power,
            path=self.state.dir / APP_FILE if persist else None, cut_mode=cut_mode,
            seed=f.seed + 1, on_busy=self._flash_busy)  # not the slot chip's tear pattern
        #: What the ROM booted last: the firmware the board was built with, an uploaded
        #: image, or its bootloader (`bootloader_reason` says why).
        self.booted: Literal["built", "image", "bootloader"] = "built"
        self.bootloader_reason: str | None = None
        self._bootloader: RomBootloader | None = None
        self._bootloader_requested = False  # the touch's flag for the ROM (a RAM magic)
        self._touch_tail = b""  # the last bytes received, for a touch split across reads
        #: What the platform is set up for: "" the built firmware, else the image's SHA-256.
        self._firmware_key: str | None = None
        self._runners: dict[bytes, Any] = {}
        self._capture: bytearray | None = None

    # --- public -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The serial URL to open (`socket://host:port`, or the pty path)."""
        if self._url is None:
            raise DeviceError("virtual board not started")
        return self._url

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Power the board on (first boot, synchronously) and serve its port; returns the URL."""
        if self._thread is not None:
            raise DeviceError("virtual board already started")
        self._load_core()
        try:
            if self._use_pty:
                self._open_pty()
            else:
                self._listener = socket.create_server((self._host, self._port))
                self._listener.setblocking(False)
                h, p = self._listener.getsockname()[:2]
                self._url = f"socket://{h}:{p}"
            self._boot(_core.TS_RESET_POWER_ON)
        except BaseException:
            self._close_io()
            raise
        self._thread = threading.Thread(target=self._serve, name="tinyship-vboard", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("virtual board thread did not stop within %.1f s", _JOIN_TIMEOUT_S)
            self._thread = None
        self._close_io()
        if self._tmp_state is not None:
            self._tmp_state.cleanup()
            self._tmp_state = None

    def power_on_headless(self) -> bytes:
        """Boot the board without a port or thread (tests, the power-loss sweep): requests
        go in with `feed_headless`, replies come back from it. Unpaced (baud 0) only.
        Returns what the board printed at boot."""
        if self._thread is not None or self.baud != 0:
            raise DeviceError("headless mode needs an unstarted, unpaced board (baud=0)")
        self._load_core()
        self._capture = bytearray()
        self._boot(_core.TS_RESET_POWER_ON)
        return self.feed_headless(b"")

    def power_cycle_headless(self) -> bytes:
        """Power off and on (headless): boot from what flash holds now."""
        assert self._capture is not None, "power_on_headless() first"
        self._boot(_core.TS_RESET_POWER_ON)
        return self.feed_headless(b"")

    def feed_headless(self, data: bytes) -> bytes:
        """Give the board `data` and return everything it sent; a reset it asks for (REBOOT,
        SLOT_REVERT, a power cut) happens before this returns, at once."""
        assert self._capture is not None, "power_on_headless() first"
        self._on_rx(data)
        while self._reset_pending:
            self._boot(self._reset_reason)
        out = bytes(self._capture)
        self._capture.clear()
        return out

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def self_test(self) -> dict[str, int]:
        self._require_core()
        st = _core.SelfTest()
        self._lib.ts_core_get_self_test(self._core, ctypes.byref(st))
        return {f: int(getattr(st, f)) for f in ("status", "vectors", "failed_vector",
                                                  "max_diff_lsb")}

    @property
    def arena_bytes(self) -> int:
        """The firmware's tensor arena, sized as a board build sizes it (select_model.py):
        the factory model's need or `custom_tinyship_arena_bytes` (platformio.ini: 32 KiB),
        whichever is larger; without slots, the factory model's. A slot model needing more
        is refused."""
        need = int(self.firmware.manifest["model"].get("arena_bytes", 0)) or 16 * 1024
        return max(need, SLOT_ARENA_BYTES) if self.flash is not None else need

    def running_model(self) -> tuple[int, int]:
        """(source, mode) of the model the core runs: TS_RUNNING_FACTORY / _SLOT_A / _SLOT_B
        and TS_RUNNING_CONFIRMED / _TRIAL."""
        self._require_core()
        src, mode = ctypes.c_uint32(0), ctypes.c_uint32(0)
        self._lib.ts_core_get_running(self._core, ctypes.byref(src), ctypes.byref(mode))
        return int(src.value), int(mode.value)

    def stats_snapshot(self) -> BoardStats:
        return dataclasses.replace(self.stats)

    def _require_core(self) -> None:
        if self._bootloader is not None:
            raise DeviceError(f"virtual board is in its bootloader ({self.bootloader_reason})")

    # --- platform callbacks --------------------------------------------------------------
    def _make_platform(self) -> None:
        fw = self.firmware
        m = fw.manifest["model"]
        f = self.faults
        version = fw.version
        if f.wrong_version:
            version = version + f.wrong_version if f.wrong_version.startswith("-") \
                else f.wrong_version
        sha = fw.sha256
        if f.wrong_hash:
            sha = ("1" if sha[0] == "0" else "0") + sha[1:]
        flash = bytearray(fw.model)
        if f.bad_model_crc and flash:
            flash[len(flash) // 2] ^= 0x01
        crc_ok = _core.crc32(bytes(flash)) == fw.crc32
        in_shape = [int(v) for v in m["input"]["shape"]]
        out_shape = [int(v) for v in m["output"]["shape"]]
        strings = {k: v.encode() for k, v in {
            "firmware_version": fw.firmware_version, "model_version": version, "model_sha256": sha,
            "profile": str(fw.manifest.get("profile", "unknown")),
            "board": f"virtual-{self.board.name}",
            "mlperf_model": self.board.mlperf_model}.items()}
        in_arr = (ctypes.c_int32 * len(in_shape))(*in_shape)
        out_arr = (ctypes.c_int32 * len(out_shape))(*out_shape)
        gi = (ctypes.c_int8 * max(1, fw.golden_inputs.size))(*fw.golden_inputs.reshape(-1))
        go = (ctypes.c_int8 * max(1, fw.golden_outputs.size))(*fw.golden_outputs.reshape(-1))
        cfg = _core.Config(
            firmware_version=strings["firmware_version"],
            model_version=strings["model_version"], model_sha256=strings["model_sha256"],
            profile=strings["profile"], board=strings["board"], git_commit=None,
            build_time=None, input_size=fw.input_size, output_size=fw.output_size,
            input_shape=in_arr, output_shape=out_arr,
            input_rank=len(in_shape), output_rank=len(out_shape),
            input_scale=float(m["input"]["scale"]), output_scale=float(m["output"]["scale"]),
            input_zero_point=int(m["input"]["zero_point"]),
            output_zero_point=int(m["output"]["zero_point"]),
            # absent in versions from before target units: identity (what they predict)
            target_mean=float(m["output"].get("target_mean", 0.0)),
            target_scale=float(m["output"].get("target_scale", 1.0)),
            arena_size=int(m.get("arena_bytes", 0)), arena_used=int(m.get("arena_min_bytes", 0)),
            model_crc32=fw.crc32,
            model_crc_check=_core.TS_CRC_OK if crc_ok else _core.TS_CRC_MISMATCH,
            boot_count=0, reset_reason=0, golden_inputs=gi, golden_outputs=go,
            golden_count=len(fw.golden_inputs), golden_tolerance_lsb=GOLDEN_TOLERANCE_LSB,
            mlperf_model=strings["mlperf_model"],
        )
        dev_id = self.state.device_id()
        dev_arr = (ctypes.c_uint8 * len(dev_id)).from_buffer_copy(dev_id)
        cfg.device_id = ctypes.cast(dev_arr, ctypes.POINTER(ctypes.c_uint8))
        cfg.device_id_len = len(dev_id)
        keep: list[Any] = [strings, in_arr, out_arr, gi, go, dev_arr]
        if self.flash is not None:
            factory = (ctypes.c_uint8 * len(flash)).from_buffer_copy(bytes(flash))
            ops = firmware_ops(str(fw.manifest.get("profile", "")),
                               [str(o) for o in m.get("ops", [])])
            ops_arr = (ctypes.c_uint16 * max(1, len(ops)))(*ops)
            cfg.flash = ctypes.pointer(self.flash.struct)
            cfg.factory_model = ctypes.cast(factory, ctypes.POINTER(ctypes.c_uint8))
            cfg.factory_model_len = len(flash)
            cfg.ops = ctypes.cast(ops_arr, ctypes.POINTER(ctypes.c_uint16))
            cfg.n_ops = len(ops)
            cfg.arena_size = self.arena_bytes
            keep += [factory, ops_arr]
        plat = _core.Platform(
            user=None, write=_core.WriteFn(self._cb_write), micros=_core.MicrosFn(self._cb_micros),
            infer=_core.InferFn(self._cb_infer),
            storage_read=_core.StorageReadFn(self._cb_storage_read),
            storage_write=_core.StorageWriteFn(self._cb_storage_write),
            flush=_core.FlushFn(self._cb_flush),
            load_model=_core.LoadModelFn(self._cb_load_model),
            reset=_core.ResetFn(self._cb_reset),
        )
        self._cfg = cfg
        self._plat = plat
        self._keep = keep

    def _cb_write(self, _user: Any, data: Any, n: int) -> int:
        self.clock.interrupt()
        try:
            self._on_tx(ctypes.string_at(data, n))
        except Exception:  # a callback must not raise into C
            log.exception("virtual board write callback failed")
        return _core.TS_OK  # like USB serial with no reader: output is lost, not an error

    def _cb_micros(self, _user: Any) -> int:
        return self.clock.now_us() & 0xFFFFFFFF

    def _cb_infer(self, _user: Any, inp: Any, n_in: int, out: Any, n_out: int) -> int:
        started = self.clock.real_us()
        try:
            x = bytes(ctypes.string_at(inp, n_in))
            y = self._runner.invoke(np.frombuffer(x, dtype=np.int8)).astype(np.int8)
            if y.size != n_out:
                return _core.TS_ERR_INFERENCE_FAILED
            if not self._in_init:
                idx = self._infer_index
                self._infer_index += 1
                self.stats.inferences += 1
                f = self.faults
                if idx in f.wrong_at or (f.wrong_prediction > 0
                                         and self._rng_board.random() < f.wrong_prediction):
                    y = ((y.astype(np.int16) + f.wrong_delta + 128) % 256 - 128).astype(np.int8)
                    self.stats.wrong_predictions += 1
            ctypes.memmove(out, y.tobytes(), n_out)
            lat_us = self.latency.latency_us(x)
            if self.realtime:
                self._keep_real_time(started, lat_us)
            self.clock.inference_done(started, lat_us)
            if self._link is not None:
                self._link.core_busy(lat_us / 1e6)
            return _core.TS_OK
        except Exception:
            log.exception("virtual board inference failed")
            return _core.TS_ERR_INFERENCE_FAILED

    def _cb_flush(self, _user: Any) -> int:
        self.clock.interrupt()
        self._flush_tx()  # the UART's transmit buffer empties at the baud rate
        return _core.TS_OK

    def _keep_real_time(self, started_us: int, us: int) -> None:
        """Before an inference that began at `started_us` ends `us` later on the board's
        clock: sleep while that clock would be ahead of the wall clock by more than the slack."""
        ahead = self.clock.ahead_us() + us - (self.clock.real_us() - started_us)
        if ahead > REALTIME_SLACK_US:
            self._stop.wait(ahead / 1e6)
        elif ahead < -REALTIME_BEHIND_WARN_US and not self._warned_behind:
            self._warned_behind = True
            log.warning("virtual board: the host is slower than the modelled board (%.1f ms "
                        "behind); real time cannot be kept", -ahead / 1000)

    def _cb_load_model(self, _user: Any, model: Any, n: int, io: Any) -> int:
        """Make `infer` run the model the core chose, read from (simulated) flash: never a
        fresh copy from the registry, so a damaged slot behaves as on a board."""
        self.clock.interrupt()
        try:
            raw = ctypes.string_at(model, n)
            entry = self._runners.get(raw)
            if entry is None:
                entry = self._new_runner(raw)
                self._runners[raw] = entry
            runner, latency = entry
            if runner is None:
                return _core.TS_ERR_MODEL_INVALID
            self._runner = runner
            self.latency = latency
            ins = runner._interp.get_input_details(0)["shape"]
            outs = runner._interp.get_output_details(0)["shape"]
            res = io.contents
            res.input_rank = len(ins)
            res.output_rank = len(outs)
            for i, d in enumerate(ins[:8]):
                res.input_shape[i] = int(d)
            for i, d in enumerate(outs[:8]):
                res.output_shape[i] = int(d)
            res.arena_used = 0
            return _core.TS_OK
        except Exception:
            log.exception("virtual board load_model failed")
            return _core.TS_ERR_MODEL_INVALID

    def _new_runner(self, model: bytes) -> tuple[Any, LatencyModel]:
        """A TFLM interpreter for `model` in the firmware's arena (None if it does not
        allocate: the health check fails) and its latency model (its MACs)."""
        from tinyship.convert.runtimes import TflmRunner
        from tinyship.convert.tflite_info import inspect_model

        try:
            runner: Any = TflmRunner(model, self.arena_bytes)
            macs = int(inspect_model(model).macs)
        except Exception as e:  # a damaged flatbuffer may fail anywhere in the parser
            log.info("virtual board: model in flash does not load: %s", e)
            return None, self.latency
        return runner, dataclasses.replace(self.latency, macs=macs)

    def _cb_reset(self, _user: Any) -> None:
        """REBOOT / SLOT_REVERT: the core replied and flushed; reset after this request."""
        self._reset_pending = True
        self._reset_reason = _core.TS_RESET_SOFTWARE

    def _flash_busy(self, seconds: float) -> None:
        """A flash operation kept the CPU busy: the board's clock and its UART see it."""
        self.clock.advance(int(seconds * 1e6))
        if self._link is not None:
            self._link.core_busy(seconds)
        if self.realtime:
            self._stop.wait(seconds)

    def _check_power(self) -> None:
        """After the core ran: a power cut during its flash work kills the board now; it
        comes back as after a brown-out (its output since the cut is lost)."""
        if self.power.cut is not None and not self._reset_pending:
            self._reset_pending = True
            self._reset_reason = _core.TS_RESET_BROWNOUT

    def _cb_storage_read(self, _user: Any, key: int, data: Any, n: int) -> int:
        try:
            ctypes.memmove(data, self.state.storage_read(int(key), int(n)), n)
            return _core.TS_OK
        except Exception:
            log.exception("virtual board storage read failed")
            return _core.TS_ERR_STORAGE

    def _cb_storage_write(self, _user: Any, key: int, data: Any, n: int) -> int:
        try:
            self.state.storage_write(int(key), ctypes.string_at(data, n))
            return _core.TS_OK
        except Exception:
            log.exception("virtual board storage write failed")
            return _core.TS_ERR_STORAGE

    # --- firmware -------------------------------------------------------------------------
    def _load_core(self) -> None:
        self._lib = _core.load_core()
        self._core_mem = (ctypes.c_uint64 * ((self._lib.ts_core_size() + 7) // 8))()

    def _latency_of(self, fw: Firmware) -> LatencyModel:
        return LatencyModel(macs=int(fw.manifest["model"].get("macs", 0)), **self._latency_kw)

    def _use_firmware(self, fw: Firmware, key: str) -> None:
        """Set the platform up for `fw` (the core's config, the factory model's interpreter,
        the latency model) unless it already is; `key`: "" for the built firmware, else the
        uploaded image's SHA-256. The state records what the board now holds."""
        if key == self._firmware_key:
            return
        from tinyship.convert.runtimes import TflmRunner

        self.firmware = fw
        self.latency = self._latency_of(fw)
        try:
            runner: Any = TflmRunner(fw.model, self.arena_bytes)
        except Exception as e:  # a damaged flatbuffer may fail anywhere in the parser
            if not key:
                raise DeviceError(f"virtual board cannot load {fw.version}: {e}") from e
            # An uploaded firmware whose model does not load: its self-test fails, as on
            # a board.
            log.warning("virtual board: the model of uploaded firmware %s does not load: %s",
                        fw.version, e)
            runner = None
        self._runner = runner
        self._runners = {fw.model: (runner, self.latency)}  # another arena, maybe
        self._make_platform()
        self.state.install(fw.version, fw.sha256, fw.firmware_version)
        self._firmware_key = key

    def _rom(self) -> bool:
        """The board's ROM (`bootloader`): set up the firmware to run, or start the
        bootloader (False)."""
        if self._bootloader_requested:
            self._bootloader_requested = False
            return self._enter_bootloader("entered on the host's request")
        try:
            image = rom_choice(self.app, self.state.app)
        except VirtualImageError as e:
            self.state.record_app({"status": "invalid", "reason": str(e)})
            return self._enter_bootloader(f"no valid application ({e})")
        self._bootloader = None
        self.bootloader_reason = None
        if image is None:
            self._use_firmware(self.built_firmware, "")
            self.booted = "built"
            return True
        self.state.record_app({"status": "valid", "firmware_version": image.firmware_version,
                               "model_version": image.version,
                               "image_sha256": image.sha256, "bytes": image.size})
        self._use_firmware(image.to_firmware(), image.sha256)
        self.booted = "image"
        return True

    def _enter_bootloader(self, reason: str) -> bool:
        self.booted = "bootloader"
        self.bootloader_reason = reason
        self._core = ctypes.c_void_p()
        self._bootloader = RomBootloader(
            self.app, send=self._boot_tx, boot=lambda: self._cb_reset(None),
            writing=lambda: self.state.record_app({"status": "uploading"}),
            record=lambda: self.state.app)
        self._boot_tx(banner(reason))
        return False

    def _boot_tx(self, data: bytes) -> None:
        """Bytes from the bootloader: the line's faults apply, the core's frame faults not."""
        if not (self._reset_pending or self.power.cut is not None):
            self._send_faulty(data)

    # --- boot ---------------------------------------------------------------------------
    def _boot(self, reason: int) -> None:
        """(Re)start the board: its ROM picks what runs, then the core starts afresh:
        storage boot counter, self-test, banner."""
        self._boot_index += 1
        seq = np.random.SeedSequence([self.faults.seed, self._boot_index])
        link_seed, board_seed = seq.spawn(2)
        self._rng_link = np.random.default_rng(link_seed)
        self._rng_board = np.random.default_rng(board_seed)
        self._infer_index = 0
        self._frames_this_boot = 0
        self._tx_in_frame = False
        self._hung = False
        self._reset_pending = False
        self._reset_reason = _core.TS_RESET_WATCHDOG
        self.power.power_on()
        for region in (self.flash, self.app):
            if region is not None:
                region.power_on()
        if self._link is not None:  # the UART's buffers do not survive a reset
            self.stats.ignored_rx += self._link.reset_device(time.monotonic())
        self._touch_tail = b""
        self.stats.boots += 1
        if not self._rom():
            return
        self._cfg.reset_reason = reason
        ctypes.memset(self._core_mem, 0, ctypes.sizeof(self._core_mem))
        core = ctypes.c_void_p()
        self._in_init = True
        try:
            st = self._lib.ts_core_init(self._core_mem, ctypes.sizeof(self._core_mem),
                                        ctypes.byref(self._cfg), ctypes.byref(self._plat),
                                        ctypes.byref(core))
        finally:
            self._in_init = False
        if core.value is None:
            raise DeviceError(f"virtual board: ts_core_init failed: {_core.status_str(st)}")
        if st != _core.TS_OK:
            log.warning("virtual board boot: %s", _core.status_str(st))
        self._core = core
        self._check_power()  # a cut during the boot's flag writes: power on again
        li = self.link_info
        st = self._lib.ts_core_set_link(core, ctypes.byref(_core.Link(li.kind, li.baud,
                                                                     li.rx_window)))
        if st != _core.TS_OK:
            log.warning("virtual board: ts_core_set_link: %s", _core.status_str(st))

    def _reboot(self, reason: int) -> None:
        """A reset with the boot delay. After a port open (`TS_RESET_PIN`) the bytes the host
        sends meanwhile wait in the port and are processed after the banner (USB CDC: the
        host driver holds them until the board's USB stack is up). A fault reset loses the
        bytes in flight, as a watchdog reset does (the port drops off the bus)."""
        if self.boot_delay_s > 0 and self._stop.wait(self.boot_delay_s):
            return
        if reason != _core.TS_RESET_PIN:
            self._drain_input()
        self._boot(reason)

    # --- serving ------------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if self._use_pty:
                    self._serve_pty_once()
                else:
                    self._serve_socket_once()
                self._pump()
                if self._reset_pending and not self._stop.is_set():
                    reason = self._reset_reason
                    if reason == _core.TS_RESET_WATCHDOG:
                        self.stats.fault_resets += 1
                    self._flush_tx()  # what the board sent before it died still arrives
                    self._reboot(reason)
        except Exception:
            log.exception("virtual board stopped on an error")

    def _serve_socket_once(self) -> None:
        assert self._listener is not None
        rlist: list[Any] = [self._listener] + ([self._conn] if self._conn else [])
        ready, _, _ = select.select(rlist, [], [], self._poll_s())
        if self._listener in ready:
            with contextlib.suppress(BlockingIOError):
                new, _ = self._listener.accept()
                new.setblocking(True)
                new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._close_conn()
                self._conn = new
                self.stats.connections += 1
                self._link = self._new_link()  # a new cable: nothing on the wire
                if self.reset_on_open:
                    self._reboot(_core.TS_RESET_PIN)  # port open toggles DTR
                return
        if self._conn is not None and self._conn in ready:
            try:
                data = self._conn.recv(4096)
            except OSError:
                data = b""
            if not data:
                self._close_conn()  # port closed; the board keeps running
                return
            self._on_rx(data)

    def _serve_pty_once(self) -> None:
        assert self._pty_master is not None
        ready, _, _ = select.select([self._pty_master], [], [], self._poll_s())
        if ready:
            try:
                data = os.read(self._pty_master, 4096)
            except OSError:
                self._stop.wait(_POLL_S)
                return
            if data:
                self._on_rx(data)

    def _on_rx(self, data: bytes) -> None:
        """Bytes the host wrote: onto the modelled wire (paced), or straight to the board.
        A running application's USB stack looks for the touch first (`_touched`)."""
        self.stats.bytes_rx += len(data)
        if self._bootloader is None and self._touched(data):
            self.stats.ignored_rx += len(data)
            return
        if self._link is not None:
            self._link.host_wrote(data, time.monotonic())
            return
        for b in data:
            self._rx_byte(b)

    def _touched(self, data: bytes) -> bool:
        """Whether `data` completes the touch: then the board resets into its bootloader,
        and the bytes of this read are lost with the reset."""
        window = self._touch_tail + data
        if TOUCH not in window:
            self._touch_tail = window[-(len(TOUCH) - 1):]
            return False
        self._touch_tail = b""
        self._bootloader_requested = True
        self._reset_pending = True
        self._reset_reason = _core.TS_RESET_SOFTWARE
        return True

    def _rx_byte(self, b: int) -> None:
        """One received byte reaches the core, or the bootloader (through the line faults)."""
        if self._hung or self._reset_pending or self._stop.is_set():
            self.stats.ignored_rx += 1
            return
        f = self.faults
        if f.drop_rx and self._rng_link.random() < f.drop_rx:
            self.stats.dropped_rx += 1
            return
        if f.corrupt_rx and self._rng_link.random() < f.corrupt_rx:
            b ^= 1 << int(self._rng_link.integers(0, 8))
            self.stats.corrupted_rx += 1
        if self._bootloader is not None:
            self._bootloader.feed(bytes([b]))
        else:
            byte = ctypes.c_uint8(b)
            self._lib.ts_core_feed(self._core, ctypes.byref(byte), 1)
        self._check_power()

    def _on_tx(self, data: bytes) -> None:
        """Bytes from the core: count frames, inject faults, pace, send."""
        if self._hung or self._reset_pending or self.power.cut is not None:
            return  # a dead board sends nothing
        start = 0
        for i, b in enumerate(data):
            if b != 0:
                continue
            if not self._tx_in_frame:
                self._tx_in_frame = True
                continue
            self._tx_in_frame = False
            self._send_faulty(data[start : i + 1])
            start = i + 1
            self._frame_sent()
            if self._hung or self._reset_pending:
                return
        if start < len(data):
            self._send_faulty(data[start:])

    def _frame_sent(self) -> None:
        f = self.faults
        self.stats.frames_tx += 1
        self._frames_this_boot += 1
        if f.garbage and self._rng_link.random() < f.garbage:
            n = int(self._rng_link.integers(1, _GARBAGE_MAX + 1))
            junk = self._rng_link.integers(1, 256, size=n, dtype=np.uint8).tobytes()
            self.stats.garbage_bursts += 1
            self.stats.garbage_bytes += n
            self._send(junk)
        if f.hang_after and self._frames_this_boot >= f.hang_after:
            self._hung = True
            self.stats.hangs += 1
            return
        if (f.reset_after and self._frames_this_boot >= f.reset_after) or (
            f.reset_probability and self._rng_board.random() < f.reset_probability
        ):
            self._reset_pending = True

    def _send_faulty(self, data: bytes) -> None:
        f = self.faults
        if not (f.drop_tx or f.corrupt_tx):
            self._send(data)
            return
        out = bytearray()
        for b in data:
            if f.drop_tx and self._rng_link.random() < f.drop_tx:
                self.stats.dropped_tx += 1
                continue
            if f.corrupt_tx and self._rng_link.random() < f.corrupt_tx:
                b ^= 1 << int(self._rng_link.integers(0, 8))
                self.stats.corrupted_tx += 1
            out.append(b)
        self._send(bytes(out))

    def _send(self, data: bytes) -> None:
        """Bytes the board transmits: queued on the modelled wire (paced), or sent now."""
        if self._link is not None:
            self._link.device_wrote(data, time.monotonic())
        elif not self._stop.is_set():
            self.stats.bytes_tx += len(data)
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        """Hand bytes to the host (they have crossed the wire)."""
        if self._capture is not None:
            self._capture += data
        elif self._conn is not None:
            try:
                self._conn.sendall(data)
            except OSError:
                self._close_conn()
        elif self._pty_master is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._pty_master, data)

    # --- the modelled UART (paced links) ------------------------------------------------
    def _new_link(self) -> UartLink | None:
        if self.baud <= 0:
            return None
        return UartLink(self.baud, rx_buffer=self.rx_buffer, time_scale=self.time_scale)

    def _pump(self) -> None:
        """Run the modelled UART up to now: arrivals, core reads, bytes due to the host."""
        link = self._link
        if link is None:
            return
        link.step(time.monotonic(), self._rx_byte)
        self.stats.overflow_rx += link.take_overflow()
        out = link.take_tx(time.monotonic())
        if out and not self._stop.is_set():
            self.stats.bytes_tx += len(out)
            self._deliver(out)

    def _poll_s(self) -> float:
        """How long the serving thread may wait for the host before the link needs it."""
        nxt = self._link.next_event() if self._link is not None else None
        if nxt is None:
            return _POLL_S
        return min(_POLL_S, max(_LINK_TICK_S, nxt - time.monotonic()))

    def _flush_tx(self) -> None:
        """Block until everything the board wrote has left the wire (delivering it)."""
        link = self._link
        if link is None:
            return
        link.core_waits_for_tx()
        while not self._stop.is_set():
            now = time.monotonic()
            out = link.take_tx(now)
            if out:
                self.stats.bytes_tx += len(out)
                self._deliver(out)
            end = link.tx_idle_at()
            if end <= now:
                return
            self._stop.wait(min(end - now, _POLL_S))

    @property
    def link_info(self) -> LinkInfo:
        """What the board reports in INFO (TS_TLV_LINK): a UART at `baud` with its receive
        buffer as the window when paced, else a byte stream without a byte rate."""
        if self.baud > 0:
            return LinkInfo(LinkKind.UART, self.baud, self.rx_buffer)
        return LinkInfo(LinkKind.STREAM, 0, 0)

    def link_stats(self, *, mark: bool = False) -> LinkStats | None:
        """The modelled UART's figures since the connection (or the last `mark=True` call,
        which also starts a new window); None when unpaced. Read them while the link is
        idle (after the replies arrived)."""
        link = self._link
        if link is None:
            return None
        return link.mark() if mark else dataclasses.replace(link.stats)

    # --- I/O helpers --------------------------------------------------------------------
    def _drain_input(self) -> None:
        if self._conn is not None:
            self._conn.setblocking(False)
            try:
                while self._conn.recv(4096):
                    pass
            except (BlockingIOError, OSError):
                pass
            finally:
                if self._conn is not None:
                    self._conn.setblocking(True)
        elif self._pty_master is not None:
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self._pty_master, 4096):
                    pass

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._pty_master, self._pty_slave = master, slave
        self.pty_path = os.ttyname(slave)
        self._url = self.pty_path

    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def _close_io(self) -> None:
        self._close_conn()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._pty_master, self._pty_slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._pty_master = self._pty_slave = None
