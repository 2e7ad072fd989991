"""Fleets: the fleet file, `flash_fleet` (order, bounded concurrency, isolation, the exit
code), `tinyship fleet flash`, the RFC 2217 bridge (`tinyship device serve`) in front of a
virtual board, and three virtual boards flashed as a fleet end to end.

`flash_fleet` is tested with `FakeFlash`, a test double at the function boundary (it stands
in for `flash_device`): these tests are about scheduling and reporting, which must not
depend on how a board is flashed. `tinyship.deploy.flash` itself is tested on virtual
boards in test_flash.py, and the last test here runs the real thing on three boards.
"""

from __future__ import annotations

import contextlib
import functools
import json
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURE_REGISTRY, REPO
from conftest import run_cli as _cli
from tinyship.deploy import fleet as F
from tinyship.deploy.flash import BoardNow, DeployContext, FlashOutcome, FlashRequest
from tinyship.deploy.log import DeploymentLog
from tinyship.device import protocol as P
from tinyship.device.client import DeviceClient
from tinyship.device.rfc2217_bridge import Rfc2217Bridge
from tinyship.device.virtual import Faults, VirtualBoard
from tinyship.errors import (
    ConfigError,
    DeviceError,
    ExitCode,
    ModelError,
    PolicyError,
    RegistryError,
    RollbackFailed,
    RolledBack,
    TinyshipError,
    ValidationFailed,
)

# pyserial's RFC 2217 client starts its reader thread with deprecated setDaemon()/setName().
no_setdaemon_warning = pytest.mark.filterwarnings(
    r"ignore:set(Daemon|Name)\(\) is deprecated:DeprecationWarning")


# --- the fleet file -----------------------------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "FLEET.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_fleet_file_with_defaults_and_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, """
[fleet]
workers = 2
env = "nano33ble"
baud = 57600

[[board]]
device = "/dev/ttyACM0"
label = "line-1"

[[board]]
device = "rfc2217://rig-2.local:2217"
env = "nanorp2040connect"
baud = 115200

[[board]]
device = "socket://127.0.0.1:5000"
""")
    fleet = F.load_fleet(path)
    assert fleet.workers == 2 and fleet.path == path
    assert fleet.boards == (
        F.FleetBoard("/dev/ttyACM0", "line-1", "nano33ble", 57600),
        F.FleetBoard("rfc2217://rig-2.local:2217", None, "nanorp2040connect", 115200),
        F.FleetBoard("socket://127.0.0.1:5000", None, "nano33ble", 57600),
    )
    assert [b.name for b in fleet.boards][:2] == ["line-1", "rfc2217://rig-2.local:2217"]
    bare = F.load_fleet(_write(tmp_path, '[[board]]\ndevice = "COM5"\n', "bare.toml"))
    assert bare.workers == F.DEFAULT_WORKERS
    assert bare.boards == (F.FleetBoard("COM5", None, None, 115_200),)


def test_the_example_fleet_file_is_valid() -> None:
    fleet = F.load_fleet(REPO / "scripts" / "fleet.example.toml")
    assert len(fleet.boards) == 3 and fleet.workers == 2
    assert all(b.label for b in fleet.boards)


BOARD = '[[board]]\ndevice = "/dev/ttyACM0"\n'


@pytest.mark.parametrize(("text", "expected"), [
    ('[flet]\nworkers = 2\n' + BOARD, "unknown key 'flet'"),
    ('[fleet]\nworker = 2\n' + BOARD, "[fleet]: unknown key 'worker'"),
    (BOARD + 'bauds = 9600\n', "[[board]] #1 (/dev/ttyACM0): unknown key 'bauds'"),
    ('[fleet]\nworkers = 0\n' + BOARD, "[fleet]: key 'workers'"),
    (BOARD + 'baud = "fast"\n', "key 'baud'"),
    (BOARD + 'baud = 9600.0\n', "key 'baud'"),  # strict: not an integer
    (BOARD + '[[board]]\nlabel = "x"\n', "[[board]] #2: missing required key 'device'"),
    ('[[board]]\ndevice = "socket://host"\n', "expected socket://HOST:PORT"),
    ('[[board]]\ndevice = "tcp://host:1"\n', "unknown scheme 'tcp'"),
    ('[[board]]\ndevice = ""\n', "not a serial port or URL"),
    ('[fleet]\nworkers = 2\n', "no [[board]] entries"),
    ("", "no [[board]] entries"),
    ('[board]\ndevice = "/dev/ttyACM0"\n', "key 'board'"),
    (BOARD + BOARD, "[[board]] #2 (/dev/ttyACM0) repeats the device /dev/ttyACM0 of "
                    "[[board]] #1"),
    ('[[board]]\ndevice = "socket://Rig:1"\n[[board]]\ndevice = "socket://rig:1"\n',
     "repeats the device"),
    ('[[board]]\ndevice = "COM5"\nlabel = "a"\n[[board]]\ndevice = "COM6"\nlabel = "a"\n',
     "[[board]] #2 (COM6) repeats the label 'a' of [[board]] #1"),
    ('[[board]\ndevice = 1\n', "not valid TOML"),
], ids=["unknown-table", "unknown-fleet-key", "unknown-board-key", "workers-0", "baud-type",
        "baud-float", "missing-device", "url-without-port", "unknown-scheme", "empty-device",
        "no-boards", "empty-file", "board-not-array", "duplicate-device",
        "duplicate-url-case", "duplicate-label", "bad-toml"])
def test_fleet_file_refusals_name_the_file_entry_and_key(tmp_path: Path, text: str,
                                                         expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        F.load_fleet(path)
    assert e.value.exit_code == ExitCode.CONFIG
    assert str(path) in str(e.value)
    assert expected in str(e.value)


def test_one_port_by_two_names_is_a_duplicate(tmp_path: Path) -> None:
    tty = tmp_path / "ttyACM0"
    tty.touch()
    alias = tmp_path / "usb-Arduino-if00"
    alias.symlink_to(tty)
    path = _write(tmp_path, f'[[board]]\ndevice = "{tty}"\n[[board]]\ndevice = "{alias}"\n')
    with pytest.raises(ConfigError, match="repeats the device"):
        F.load_fleet(path)


def test_a_missing_fleet_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fleet file not found"):
        F.load_fleet(tmp_path / "nope.toml")


# --- flash_fleet with a test double for flash_device ----------------------------------------

#: What FakeFlash answers for an exit code: the result name and the error class.
ANSWERS: dict[int, tuple[str, type[TinyshipError]]] = {
    ExitCode.ROLLBACK_FAILED: ("rollback_failed", RollbackFailed),
    ExitCode.DEVICE: ("failed", DeviceError),
    ExitCode.ROLLED_BACK: ("rolled_back", RolledBack),
    ExitCode.VALIDATION: ("failed", ValidationFailed),
    ExitCode.MODEL: ("refused", ModelError),
    ExitCode.POLICY: ("refused", PolicyError),
    ExitCode.REGISTRY: ("refused", RegistryError),
}


class FakeFlash:
    """A test double at the function boundary, standing in for `flash_device`: records
    each request, counts calls in progress, and answers per device from `plan` (an exit
    code -> that outcome; an exception -> raised), after `delays[url]` seconds. With
    `crowd`, the first calls wait until that many are in progress at once (so a test of
    the pool's bound does not depend on timing)."""

    def __init__(self, plan: dict[str, int | Exception] | None = None,
                 delays: dict[str, float] | None = None, crowd: int = 0) -> None:
        self.plan = plan or {}
        self.delays = delays or {}
        self.crowd = crowd
        self.crowded = threading.Event()
        self.lock = threading.Lock()
        self.active = self.max_active = 0
        self.requests: list[FlashRequest] = []
        self.threads: set[str] = set()

    def __call__(self, req: FlashRequest, ctx: DeployContext) -> FlashOutcome:
        with self.lock:
            self.requests.append(req)
            self.threads.add(threading.current_thread().name)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            if self.active >= self.crowd:
                self.crowded.set()
        try:
            if self.crowd:
                self.crowded.wait(5.0)
            time.sleep(self.delays.get(req.url, 0.0))
            answer = self.plan.get(req.url, 0)
            if isinstance(answer, Exception):
                raise answer
            return self.outcome(req, answer)
        finally:
            with self.lock:
                self.active -= 1

    @staticmethod
    def outcome(req: FlashRequest, code: int) -> FlashOutcome:
        result, cls = ANSWERS.get(code, ("ok", TinyshipError))
        error = None if code == 0 else cls(f"{req.url}: failed with {code}")
        now = "v0000" if code else req.model
        return FlashOutcome(
            command="flash", url=req.url, label=req.label, device_id=f"id-{req.url[-1]}",
            result=result, from_version="v0000", to_version=req.model,
            path="slot", failed_step=None if code == 0 else "smoke",
            message=None if error is None else str(error), error=error,
            rollback="reverted slot A" if code == ExitCode.ROLLED_BACK else None,
            board=BoardNow(reachable=code != ExitCode.DEVICE, model_version=now,
                           running="slot A (confirmed)"))


def _fleet(n: int, workers: int = F.DEFAULT_WORKERS) -> F.Fleet:
    return F.Fleet(tuple(F.FleetBoard(f"socket://127.0.0.1:{5000 + i}", f"b{i}",
                                      "nano33ble", 115_200) for i in range(n)), workers)


def _ctx(tmp_path: Path) -> DeployContext:
    """The committed registry (read only here: nothing is flashed)."""
    return DeployContext(registry_root=FIXTURE_REGISTRY, log_path=tmp_path / "log.sqlite",
                         lock_dir=tmp_path / "locks")


def test_results_keep_the_file_order_whatever_finishes_first(tmp_path: Path) -> None:
    fleet = _fleet(5, workers=5)
    urls = [b.device for b in fleet.boards]
    fake = FakeFlash(delays={u: 0.04 * (5 - i) for i, u in enumerate(urls)})
    finished: list[int] = []
    result = F.flash_fleet(fleet, "v0001", _ctx(tmp_path), flash=fake,
                           on_done=lambda item: finished.append(item.index))
    assert finished == [4, 3, 2, 1, 0]  # as they finished
    assert [b.index for b in result.boards] == [0, 1, 2, 3, 4]
    assert [b.outcome.url for b in result.boards] == urls
    assert [b.board for b in result.boards] == list(fleet.boards)
    assert result.ok and result.exit_code == 0 and result.error() is None
    assert result.boards[0].duration_s >= 0.19
    assert result.counts() == {"ok": 5}


def test_concurrency_is_bounded_by_workers(tmp_path: Path) -> None:
    fake = FakeFlash(crowd=3, delays={f"socket://127.0.0.1:{5000 + i}": 0.02
                                      for i in range(8)})
    result = F.flash_fleet(_fleet(8), "v0001", _ctx(tmp_path), workers=3, flash=fake)
    assert fake.max_active == 3 and len(fake.threads) == 3
    assert result.workers == 3 and len(fake.requests) == 8
    # the fleet file's workers by default; never more threads than boards
    fake = FakeFlash(crowd=2)
    assert F.flash_fleet(_fleet(2, workers=16), "v0001", _ctx(tmp_path),
                         flash=fake).workers == 2
    assert fake.max_active == 2
    fake = FakeFlash()
    F.flash_fleet(_fleet(4, workers=1), "v0001", _ctx(tmp_path), flash=fake)
    assert fake.max_active == 1
    with pytest.raises(ValueError, match="workers"):
        F.flash_fleet(_fleet(2), "v0001", _ctx(tmp_path), workers=0, flash=fake)


def test_an_exception_in_one_board_is_that_boards_failure(tmp_path: Path) -> None:
    fleet = _fleet(4)
    urls = [b.device for b in fleet.boards]
    fake = FakeFlash(plan={urls[1]: RuntimeError("boom"),
                           urls[2]: DeviceError(f"{urls[2]}: no answer")})
    result = F.flash_fleet(fleet, "v0001", _ctx(tmp_path), flash=fake)
    assert [b.outcome.result for b in result.boards] == ["ok", "failed", "failed", "ok"]
    crashed = result.boards[1].outcome
    assert crashed.exit_code == ExitCode.INTERNAL and "RuntimeError: boom" in str(crashed.error)
    assert "RuntimeError: boom" in crashed.details["traceback"]
    assert (crashed.label, crashed.to_version, crashed.board) == ("b1", "v0001", None)
    assert result.boards[2].outcome.exit_code == ExitCode.DEVICE
    assert result.exit_code == ExitCode.DEVICE  # 8 ranks above an internal error
    json.dumps(result.to_dict())  # the traceback and errors serialise


@pytest.mark.parametrize(("codes", "expected"), [
    ([0, 0, 0], 0),
    ([0, 12, 8], 8),
    ([12, 13, 8], 13),
    ([9, 12], 12),
    ([7, 9], 9),
    ([11, 7], 7),
    ([6, 11], 11),
    ([1, 6], 6),
    ([1, 10, 0], 10),
    ([3, 1], 3),
])
def test_the_fleet_exit_code_is_the_most_severe_boards(codes: list[int],
                                                       expected: int) -> None:
    assert F.fleet_exit_code(codes) == expected


def test_fleet_result_error_and_json(tmp_path: Path) -> None:
    fleet = _fleet(3)
    urls = [b.device for b in fleet.boards]
    fake = FakeFlash(plan={urls[0]: ExitCode.ROLLED_BACK, urls[2]: ExitCode.ROLLBACK_FAILED})
    result = F.flash_fleet(fleet, "v0001", _ctx(tmp_path), flash=fake)
    assert result.exit_code == ExitCode.ROLLBACK_FAILED
    err = result.error()
    assert isinstance(err, F.FleetFailed) and err.exit_code == ExitCode.ROLLBACK_FAILED
    assert str(err) == ("2 of 3 boards not updated to v0001 (1 rolled_back, 1 "
                        "rollback_failed: b0, b2); exit code 13 from b2")
    assert err.hint == RollbackFailed.hint
    doc = json.loads(json.dumps(result.to_dict()))
    assert (doc["ok"], doc["exit_code"], doc["model"]) == (False, 13, "v0001")
    assert doc["counts"] == {"ok": 1, "rolled_back": 1, "rollback_failed": 1}
    b0 = doc["boards"][0]
    assert (b0["index"], b0["label"], b0["device"], b0["result"], b0["exit_code"]) == (
        0, "b0", urls[0], "rolled_back", 12)
    assert b0["error"]["type"] == "RolledBack" and b0["board"]["model_version"] == "v0000"


def test_requests_carry_the_board_and_the_options(tmp_path: Path) -> None:
    fake = FakeFlash()
    F.flash_fleet(_fleet(2), "latest", _ctx(tmp_path), flash=fake, allow_downgrade=True,
                  smoke_vectors=5)
    req = sorted(fake.requests, key=lambda r: r.url)[1]
    assert (req.url, req.model, req.label, req.env, req.baud) == (
        "socket://127.0.0.1:5001", "v0001", "b1", "nano33ble", 115_200)  # alias resolved
    assert (req.allow_downgrade, req.smoke_vectors) == (True, 5)


def test_refusals_before_any_board(tmp_path: Path) -> None:
    fake = FakeFlash()
    with pytest.raises(RegistryError, match="v0099"):
        F.flash_fleet(_fleet(2), "v0099", _ctx(tmp_path), flash=fake)
    with pytest.raises(TypeError):
        F.flash_fleet(_fleet(2), "v0001", _ctx(tmp_path), flash=fake, smoke_vector=3)
    assert fake.requests == []


def test_a_failing_callback_starts_no_further_board(tmp_path: Path) -> None:
    fake = FakeFlash()

    def on_done(item: F.BoardResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        F.flash_fleet(_fleet(6, workers=1), "v0001", _ctx(tmp_path), flash=fake,
                      on_done=on_done)
    assert len(fake.requests) < 6


def test_the_example_script_prints_its_usage() -> None:
    r = subprocess.run(["bash", str(REPO / "scripts" / "fleet_flash.sh")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "scripts/fleet_flash.sh FLEET.toml VERSION" in r.stderr


# --- `tinyship fleet flash` with the same double ---------------------------------------------


@pytest.fixture
def fake_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFlash:
    """`tinyship fleet flash` with `FakeFlash` in place of `flash_device`; in a folder
    without tinyship.toml, on a wide terminal (whole table cells)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "220")
    fake = FakeFlash(plan={"socket://127.0.0.1:5001": ExitCode.ROLLED_BACK})
    monkeypatch.setattr(F, "flash_fleet", functools.partial(F.flash_fleet, flash=fake))
    _write(tmp_path, "".join(f'[[board]]\ndevice = "socket://127.0.0.1:{5000 + i}"\n'
                             f'label = "line-{i + 1}"\n' for i in range(3)))
    return fake


def test_cli_fleet_flash_table_lines_and_exit_code(fake_fleet: FakeFlash, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "fleet", "flash", "FLEET.toml", "--model", "v0001",
                          "--registry", str(FIXTURE_REGISTRY), "--log", "log.sqlite",
                          "--workers", "2", "--smoke-vectors", "3", "--allow-downgrade")
    assert code == ExitCode.ROLLED_BACK
    assert "flashing v0001 onto 3 boards, 2 at a time" in err
    assert sum(f"[{i}/3]" in err for i in (1, 2, 3)) == 3
    assert "rolled_back line-2: v0000 -> v0001 by slot" in err
    assert "error: 1 of 3 boards not updated to v0001 (1 rolled_back: line-2)" in err
    for text in ("line-1", "line-3", "socket://127.0.0.1:5001", "v0000 -> v0001",
                 "rolled_back", "smoke: socket://127.0.0.1:5001: failed with 12",
                 "reverted slot A", "v0001, slot A (confirmed)"):
        assert text in out
    assert {(r.smoke_vectors, r.allow_downgrade) for r in fake_fleet.requests} == {(3, True)}


def test_cli_fleet_flash_json(fake_fleet: FakeFlash, capsys: pytest.CaptureFixture[str]
                              ) -> None:
    code, out, _ = _cli(capsys, "fleet", "flash", "FLEET.toml", "--model", "v0001",
                        "--registry", str(FIXTURE_REGISTRY), "--log", "log.sqlite", "--json")
    doc = json.loads(out)  # exactly one document
    assert code == doc["exit_code"] == ExitCode.ROLLED_BACK
    assert doc["ok"] is False and doc["error"]["type"] == "FleetFailed"
    assert [b["result"] for b in doc["boards"]] == ["ok", "rolled_back", "ok"]
    assert [b["label"] for b in doc["boards"]] == ["line-1", "line-2", "line-3"]
    fake_fleet.plan.clear()
    code, out, _ = _cli(capsys, "fleet", "flash", "FLEET.toml", "--model", "v0001",
                        "--registry", str(FIXTURE_REGISTRY), "--log", "log.sqlite", "--json")
    assert code == 0 and json.loads(out)["ok"] is True


def test_cli_fleet_flash_refuses_a_bad_fleet_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, BOARD + BOARD)
    code, out, err = _cli(capsys, "fleet", "flash", "FLEET.toml", "--model", "v0001",
                          "--registry", str(FIXTURE_REGISTRY), "--json")
    assert code == ExitCode.CONFIG
    assert json.loads(out)["error"]["type"] == "ConfigError"
    assert "repeats the device /dev/ttyACM0" in err


# --- the RFC 2217 bridge -----------------------------------------------------------------------


@contextlib.contextmanager
def _vboard(registry: Path, state: Path, **kw: Any) -> Iterator[VirtualBoard]:
    kw.setdefault("baud", 0)
    kw.setdefault("boot_delay_s", 0.05)
    with VirtualBoard(registry, "v0001", state_dir=state, **kw) as vb:
        yield vb


def _ping(url: str, seq: int) -> P.Frame:
    """A PING through pyserial's own RFC 2217 client (not tinyship's transport)."""
    import serial

    port = serial.serial_for_url(url, timeout=0.05)
    try:
        port.write(P.encode_frame(P.Command.PING, seq, b"bridge"))
        reader = P.FrameReader()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for frame in reader.feed(port.read(256)):
                if frame.seq == seq:
                    return frame
        raise AssertionError(f"no answer to PING {seq} through {url}")
    finally:
        port.close()


def _client_through(url: str) -> DeviceClient:
    """tinyship's client on an rfc2217:// URL (its transport leaves pyserial's RFC 2217
    reader thread its socket and sets no write timeout, which that client refuses)."""
    return DeviceClient.open(url, baud=115_200)


@no_setdaemon_warning
def test_bridge_serves_successive_clients_and_stops(tmp_path: Path) -> None:
    with _vboard(FIXTURE_REGISTRY, tmp_path / "s") as vb:
        bridge = Rfc2217Bridge(vb.url)
        url = bridge.start()
        assert url.startswith("rfc2217://127.0.0.1:") and bridge.running
        for seq in (1, 2, 3):
            frame = _ping(url, seq)
            assert frame.cmd == P.Command.PING | P.RESPONSE_FLAG and frame.payload == b"bridge"
        assert bridge.sessions == 3
        bridge.stop()
        bridge.stop()  # twice is fine
        assert not bridge.running
        assert not any(t.name.startswith("tinyship-rfc2217") for t in threading.enumerate())
        with pytest.raises(DeviceError, match="not started"):
            _ = bridge.url


@no_setdaemon_warning
def test_a_dead_port_ends_the_session_not_the_bridge(tmp_path: Path) -> None:
    import serial

    events: list[str] = []
    with _vboard(FIXTURE_REGISTRY, tmp_path / "s") as vb, Rfc2217Bridge(
            vb.url, open_timeout_s=0.2, on_event=events.append) as bridge:
        assert _ping(bridge.url, 1).payload == b"bridge"
        vb.stop()  # the board is gone (unplugged, its rig host's port vanished)
        with pytest.raises(serial.SerialException):
            serial.serial_for_url(bridge.url + "?timeout=0.5")
        assert bridge.running
    assert events[0].startswith("client 127.0.0.1:") and events[0].endswith(" connected")
    assert events[1] == events[0].replace("connected", "disconnected")
    assert any(e.startswith("refused") and "cannot open serial port" in e for e in events)


def test_bridge_refuses_a_port_it_cannot_open(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match=r"cannot open serial port .*no-such-tty"):
        Rfc2217Bridge(str(tmp_path / "no-such-tty")).start()


@no_setdaemon_warning
def test_device_client_hello_infer_and_reconnect_through_rfc2217(tmp_path: Path) -> None:
    from tinyship.hil.harness import load_test_set
    from tinyship.registry import Registry

    ts = load_test_set(Registry(FIXTURE_REGISTRY), "v0001", limit=64)
    with _vboard(FIXTURE_REGISTRY, tmp_path / "s") as vb, Rfc2217Bridge(vb.url) as bridge:
        client = _client_through(bridge.url)
        with client:
            assert client.hello().model_version == "v0001"
            outputs, latencies = client.infer(ts.x_int8)
            assert (outputs == ts.reference_int8).all() and len(latencies) == 64
            client.reconnect()  # a new RFC 2217 client session, the port reopened
            assert client.hello().model_version == "v0001"
            assert client.counters.reconnects == 1 and bridge.sessions == 2


@no_setdaemon_warning
def test_device_serve_cli(tmp_path: Path) -> None:
    with _vboard(FIXTURE_REGISTRY, tmp_path / "s") as vb:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tinyship", "device", "serve", "--port", vb.url,
             "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30.0)
            assert ready, "no URL from `tinyship device serve`"
            url = proc.stdout.readline().strip()
            assert url.startswith("rfc2217://127.0.0.1:")
            assert _ping(url, 7).payload == b"bridge"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err
        assert "connected" in err and "disconnected" in err and "stopped" in err
    code = subprocess.run([sys.executable, "-m", "tinyship", "device", "serve", "--port",
                           "x", "--listen", "nowhere"], capture_output=True, text=True)
    assert code.returncode == ExitCode.USAGE and "expected HOST:PORT" in code.stderr


# --- three virtual boards as a fleet, end to end -------------------------------------------


def _reads(url: str) -> tuple[str | None, str | None]:
    """What the board itself says it runs: (model version, running)."""
    with DeviceClient.open(url, baud=115_200) as c:
        info = c.hello()
    run = info.running
    return info.model_version, f"{run.source_name} ({run.mode_name})" if run else None


@no_setdaemon_warning
def test_fleet_of_three_virtual_boards(versions_registry: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """END TO END with the real `flash_device` and the RFC 2217 bridge. Three USB-like
    boards on v0001 (no reset on open: a trial survives the reconnects); line-2 is reached
    through the bridge.
    line-3 answers every INFER wrongly (`wrong_prediction=1.0`): the fault skips the boot
    self-test, which runs inside the core's init, so v0003's trial boots healthy and only
    the host's smoke check (bit parity with the reference) catches it; the rollback is
    verified by identity and self-test, so the board ends rolled back (12), not 13."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "220")
    reg = versions_registry
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(_vboard(reg, tmp_path / "a", reset_on_open=False))
        b = stack.enter_context(_vboard(reg, tmp_path / "b", reset_on_open=False))
        c = stack.enter_context(_vboard(reg, tmp_path / "c", reset_on_open=False,
                                        faults=Faults(wrong_prediction=1.0)))
        bridge = stack.enter_context(Rfc2217Bridge(b.url))
        _client_through(bridge.url).close()
        urls = {"line-1": a.url, "line-2": bridge.url, "line-3": c.url}
        _write(tmp_path, "[fleet]\nworkers = 3\n" + "".join(
            f'[[board]]\ndevice = "{u}"\nlabel = "{name}"\n' for name, u in urls.items()))
        args = ("fleet", "flash", "FLEET.toml", "--model", "v0003", "--registry", str(reg),
                "--log", "log.sqlite", "--smoke-vectors", "4")

        code, out, err = _cli(capsys, *args, "--json")
        doc = json.loads(out)
        assert code == doc["exit_code"] == ExitCode.ROLLED_BACK, err
        by = {d["label"]: d for d in doc["boards"]}
        assert [d["label"] for d in doc["boards"]] == ["line-1", "line-2", "line-3"]
        for name in ("line-1", "line-2"):
            assert (by[name]["result"], by[name]["from_version"], by[name]["to_version"]) \
                == ("ok", "v0001", "v0003"), by[name]
            assert by[name]["board"]["model_version"] == "v0003"
            assert _reads(urls[name]) == ("v0003", "slot A (confirmed)")
        bad = by["line-3"]
        assert (bad["result"], bad["failed_step"], bad["exit_code"]) == (
            "rolled_back", "smoke", ExitCode.ROLLED_BACK), bad
        assert bad["board"]["model_version"] == "v0001"
        assert _reads(urls["line-3"]) == ("v0001", "factory (confirmed)")
        assert doc["counts"] == {"ok": 2, "rolled_back": 1}
        attempts = DeploymentLog(tmp_path / "log.sqlite").list_attempts()
        assert sorted(x.result for x in attempts) == ["ok", "ok", "rolled_back"]

        # Again, as a person reads it: the updated boards already run v0003 (nothing sent),
        # line-3 is rolled back again; the table and the exit code say so.
        code, out, err = _cli(capsys, *args)
        assert code == ExitCode.ROLLED_BACK
        assert "rolled_back line-3" in err and "1 of 3 boards not updated to v0003" in err
        assert "line-3" in out and "rolled_back" in out and "v0001 -> v0003" in out
