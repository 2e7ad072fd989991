"""HIL harness end to end against the virtual board, plus the transport/client plumbing.

* `Timeout` with a fake clock; port identity and re-enumeration with a fake port list;
  a dead port and a silent port fail fast with `DeviceError` naming the port.
* `DeviceClient` never accepts a reply with a wrong seq or a bad CRC (scripted fake port).
* A clean virtual board passes (library and CLI: exit 0, JSON keys, JUnit testcases).
* Every fault either completes with correct results or fails the right check / raises
  `DeviceError`, within a time bound, and a wrong prediction or identity never passes.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from conftest import FakeSerial
from tinyship.config import BoardSection, Config
from tinyship.device import protocol as P
from tinyship.device.client import DeviceClient
from tinyship.device.transport import PortIdentity, Timeout, Transport, find_port, identify_port
from tinyship.errors import DeviceError, DeviceTimeout
from tinyship.hil import REPORT_KEYS, validate

#: Generous bound on one faulty validation (retries, reopen, boot delay included).
FAULT_TIME_LIMIT_S = 25.0
LIMIT = 60


# --- deadline, ports ----------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_timeout_with_fake_clock() -> None:
    clock = FakeClock()
    t = Timeout(2.0, clock=clock)
    assert not t.expired and t.remaining() == 2.0
    clock.t += 1.5
    assert not t.expired and t.remaining() == pytest.approx(0.5)
    clock.t += 0.5
    assert t.expired and t.remaining() == 0.0 and t.elapsed() == pytest.approx(2.0)
    t.restart()
    assert not t.expired
    forever = Timeout(None, clock=clock)
    clock.t += 1e9
    assert not forever.expired and forever.remaining() == float("inf")


def _port(device: str, vid: int | None = 0x2341, pid: int = 0x805A, sn: str = "ABC") -> Any:
    return SimpleNamespace(device=device, vid=vid, pid=pid, serial_number=sn)


def test_identify_and_find_port_after_reenumeration() -> None:
    ports = [_port("/dev/ttyS0", vid=None), _port("/dev/ttyACM0"), _port("/dev/ttyACM1", sn="X")]
    ident = identify_port("/dev/ttyACM0", lister=lambda: ports)
    assert ident == PortIdentity(0x2341, 0x805A, "ABC")
    assert identify_port("socket://localhost:1", lister=lambda: ports) is None
    assert identify_port("/dev/ttyS0", lister=lambda: ports) is None
    moved = [_port("/dev/ttyACM1", sn="X"), _port("/dev/ttyACM2")]
    assert find_port(ident, lister=lambda: moved) == "/dev/ttyACM2"
    assert find_port(ident, lister=lambda: []) is None


class _FakeSerial:
    """Records settings; opening fails for names in `dead`."""

    def __init__(self, url: str, dead: set[str]) -> None:
        self.url, self.dead, self.is_open = url, dead, False
        self.baudrate: int | None = None
        self.timeout: float | None = None
        self.write_timeout: float | None = None
        self.dtr: bool | None = None
        self.rts: bool | None = None

    def open(self) -> None:
        import serial

        if self.url in self.dead:
            raise serial.SerialException(f"could not open port {self.url}: No such device")
        self.is_open = True

    def close(self) -> None:
        self.is_open = False


def test_transport_sets_dtr_rts_before_open_and_finds_renamed_port() -> None:
    made: list[_FakeSerial] = []
    dead: set[str] = set()
    ports = [_port("/dev/ttyACM0")]

    def factory(url: str, do_not_open: bool = False) -> _FakeSerial:
        assert do_not_open
        made.append(_FakeSerial(url, dead))
        return made[-1]

    clock = FakeClock()

    def sleep(s: float) -> None:
        clock.t += s
        ports[:] = [_port("/dev/ttyACM3")]  # the board re-enumerated under a new name

    t = Transport("/dev/ttyACM0", baud=9600, dtr=True, rts=False, serial_factory=factory,
                  lister=lambda: ports, clock=clock, sleep=sleep)
    t.open()
    assert (made[0].dtr, made[0].rts, made[0].baudrate, made[0].is_open) == (True, False, 9600,
                                                                             True)
    dead.add("/dev/ttyACM0")
    ports[:] = []
    t.reopen(timeout_s=5.0)
    assert t.url == "/dev/ttyACM3" and made[-1].is_open and t.opens == 2
    dead.add("/dev/ttyACM3")
    ports[:] = []
    clock.t = 0.0
    with pytest.raises(DeviceError, match=r"ttyACM3.*did not come back"):
        t.reopen(timeout_s=1.0)


def test_missing_port_is_a_clear_device_error() -> None:
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="/dev/tinyship-no-such-port"):
        DeviceClient.open("/dev/tinyship-no-such-port")
    assert time.monotonic() - t0 < 2.0


def test_silent_port_times_out_on_the_banner() -> None:
    # loop:// echoes our own PING probe back: a request is not a reply, so it must not count
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no 'tinyship ready' banner"):
        DeviceClient.open("loop://", banner_timeout_s=0.5)
    assert time.monotonic() - t0 < 2.0


# --- client rules, with a scripted port ----------------------------------------------------


class ScriptedPort(FakeSerial):
    """A pyserial stand-in: answers each request through `script(frame, n) -> bytes`."""

    def __init__(self, script: Callable[[P.Frame, int], bytes]) -> None:
        super().__init__(b"tinyship ready proto=1 fw=test\r\n")
        self.script = script
        self.n = 0

    def write(self, data: bytes) -> int:
        for f in self.reader.feed(data):
            self.n += 1
            self.rx += self.script(f, self.n)
        return len(data)


def _client(script: Callable[[P.Frame, int], bytes], **kw: Any) -> DeviceClient:
    port = ScriptedPort(script)
    c = DeviceClient(Transport("scripted", serial_factory=lambda *a, **k: port), **kw)
    c.connect(banner_timeout_s=1.0)
    return c


def test_client_rejects_wrong_seq_and_bad_crc_then_retries() -> None:
    def script(f: P.Frame, n: int) -> bytes:
        good = P.encode_frame(f.cmd | 0x80, f.seq, f.payload)
        if n == 1:  # wrong seq, then a reply whose CRC is damaged: both must be ignored
            bad = bytearray(good)
            bad[-3] ^= 0x10
            return P.encode_frame(f.cmd | 0x80, (f.seq + 1) & 0xFFFF, b"nope") + bytes(bad)
        return good

    c = _client(script, reply_timeout_s=0.2)
    assert c.ping(b"payload") >= 0
    assert c.counters.stale_replies == 1 and c.counters.bad_replies == 1
    assert c.counters.retries == 1


def test_client_gives_up_after_bounded_retries() -> None:
    c = _client(lambda f, n: b"", reply_timeout_s=0.05, max_retries=2)
    c.reconnect = lambda: None  # type: ignore[method-assign]
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match="no valid reply to PING after 3 attempts"):
        c.ping()
    assert time.monotonic() - t0 < 2.0


def test_client_raises_permanent_device_errors() -> None:
    from tinyship.device.client import DeviceReplyError

    def script(f: P.Frame, n: int) -> bytes:
        return P.encode_frame(0xFF, f.seq, P.encode_error(P.Status.UNKNOWN_COMMAND, f.cmd))

    c = _client(script)
    with pytest.raises(DeviceReplyError, match="TS_ERR_UNKNOWN_COMMAND"):
        c.stats()


class ProbePort(ScriptedPort):
    """ScriptedPort that also answers frames failing their CRC, through `on_bad(k)` (k-th)."""

    def __init__(self, on_bad: Callable[[int], bytes]) -> None:
        super().__init__(lambda f, n: P.encode_frame(f.cmd | 0x80, f.seq, f.payload))
        self.on_bad = on_bad
        self.bad_seen = 0

    def write(self, data: bytes) -> int:
        before = self.reader.bad_frames
        super().write(data)
        for _ in range(self.reader.bad_frames - before):
            self.bad_seen += 1
            self.rx += self.on_bad(self.bad_seen)
        return len(data)


def _bad_crc_reply() -> bytes:
    return P.encode_frame(0xFF, P.SEQ_UNKNOWN, P.encode_error(P.Status.BAD_CRC, 0))


def _probe(port: ProbePort) -> tuple[Any, DeviceClient]:
    from tinyship.hil.harness import error_handling_check

    c = DeviceClient(Transport("scripted", serial_factory=lambda *a, **k: port),
                     reply_timeout_s=0.1)
    c.connect(banner_timeout_s=1.0)
    return error_handling_check(c), c


def test_error_probe_resends_when_the_error_reply_is_lost_on_the_link() -> None:
    def on_bad(k: int) -> bytes:
        reply = bytearray(_bad_crc_reply())
        if k == 1:  # the first answer arrives damaged, as on a noisy link
            reply[-3] ^= 0x10
        return bytes(reply)

    port = ProbePort(on_bad)
    check, client = _probe(port)
    assert check.passed, check.detail
    assert "send 2 of 3" in check.detail and port.bad_seen == 2
    assert client.counters.retries == 1


def test_error_probe_fails_a_device_that_never_answers_bad_frames() -> None:
    from tinyship.hil.harness import ERROR_PROBE_ATTEMPTS

    port = ProbePort(lambda k: b"")  # answers PING, ignores damaged frames
    check, _ = _probe(port)
    assert not check.passed
    assert port.bad_seen == ERROR_PROBE_ATTEMPTS
    assert f"nothing (send {ERROR_PROBE_ATTEMPTS} of {ERROR_PROBE_ATTEMPTS})" in check.detail


# --- harness against the virtual board -----------------------------------------------------


def _board(registry: tuple[Config, str], **faults: Any) -> Any:
    from tinyship.device.virtual import Faults, VirtualBoard

    cfg, version = registry
    return VirtualBoard(cfg.registry_path, version, baud=0, boot_delay_s=0.05,
                        faults=Faults(seed=faults.pop("seed", 7), **faults))


def test_clean_board_passes(trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    with _board(trained_registry) as vb:
        report = validate(vb.url, cfg.registry_path, version, board_cfg=cfg.board, baud=0)
    d = report.to_dict()
    assert tuple(d) == REPORT_KEYS and d["passed"], [c for c in d["checks"] if not c["passed"]]
    assert d["mismatches"] == 0 and d["max_lsb_diff"] == 0 and d["retries"] == 0
    assert d["vectors"] > 0 and d["expected"]["version"] == version
    assert d["device"]["model_version"] == version and d["metric"]["name"] == "mae"
    assert d["metric"]["full_test_set"] and d["metric"]["agreement"]["rmse"] == 0.0
    assert d["metric"]["device"] == pytest.approx(d["metric"]["registry"], rel=1e-5)
    assert set(d["latency_us"]) == {"p50", "p95", "p99", "max"}
    assert {c["name"] for c in d["checks"]} >= {
        "protocol_version", "model_version", "model_sha256", "model_crc", "self_test",
        "parity", "metric", "latency", "error_handling", "no_reset"}
    link = d["link"]
    assert d["throughput_vps"] == link["vectors_per_s"] > 0
    # unpaced, the board says its link is a byte stream: bytes/s only, no share of a wire
    assert (link["kind"], link["physical"], link["source"], link["byte_rate"]) == (
        "stream", False, "device", None)
    for direction in ("host_to_device", "device_to_host", "input_payload"):
        assert link[direction]["bytes_per_s"] > 0 and link[direction]["utilization"] is None
    assert link["input_payload"]["bytes"] == d["vectors"] * d["expected"]["input_size"]


def test_metric_in_target_units_and_target_identity_check(
        registry_copy: Callable[[], tuple[Path, str]],
        trained_registry: tuple[Config, str]) -> None:
    """A model predicting the standardized target: the device's outputs are read in target
    units (the metric), and the device's reported target units must match the registry."""
    from tinyship.convert.runtimes import to_target_units
    from tinyship.device.virtual import Faults, VirtualBoard
    from tinyship.train.metrics import regression_metrics

    cfg, _ = trained_registry
    root, version = registry_copy()
    path = root / version / "manifest.json"
    manifest = json.loads(path.read_text())
    out = manifest["model"]["output"]
    out.update(target_mean=60.0, target_scale=8.0)
    path.write_text(json.dumps(manifest))
    with VirtualBoard(root, version, baud=0, boot_delay_s=0.05, faults=Faults(seed=7)) as vb:
        report = validate(vb.url, root, version, baud=0, limit=LIMIT)
        # the same board against a registry whose target units differ (the original)
        other = validate(vb.url, cfg.registry_path, version, baud=0, limit=LIMIT,
                         robustness_probe=False)
    assert report.passed, report.failed_checks
    assert report.device["target_mean"] == 60.0 and report.device["target_scale"] == 8.0
    io = next(c for c in report.checks if c.name == "io_contract")
    assert "target mean/scale device 60.0/8.0, registry 60.0/8.0" in io.detail
    with np.load(root / version / "test_set.npz") as z:
        y = z["y"][:LIMIT]
        ref = z["reference_int8"][:LIMIT].reshape(LIMIT, -1)
    want = regression_metrics(y, to_target_units(ref, out)[:, 0])["mae"]
    plain = regression_metrics(y, ((ref - out["zero_point"]) * out["scale"])[:, 0])["mae"]
    assert report.metric["device"] == pytest.approx(want, rel=1e-9)
    assert abs(want - plain) > 1.0  # the bare dequantized outputs would be far off
    assert [c.name for c in other.failed_checks] == ["io_contract"]


def test_latency_budget_is_enforced(trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    with _board(trained_registry) as vb:
        report = validate(vb.url, cfg.registry_path, version, limit=10, baud=0,
                          board_cfg=BoardSection(latency_budget_us=1))
    assert not report.passed and [c.name for c in report.failed_checks] == ["latency"]


def test_cli_pass_json_junit_csv(trained_registry: tuple[Config, str], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tinyship.cli import main

    cfg, version = trained_registry
    junit, csv_path, png = tmp_path / "hil.xml", tmp_path / "hil.csv", tmp_path / "hil.png"
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit) as e:
        main(["hil", "--registry", str(cfg.registry_path), "--model", version, "--baud", "0",
              "--limit", "30", "--json", "--junit", str(junit), "--csv", str(csv_path),
              "--plot", str(png)])
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    d = json.loads(out)
    assert tuple(d) == REPORT_KEYS and d["passed"] and d["vectors"] == 30
    suite = ET.parse(junit).getroot()
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [c["name"] for c in d["checks"]]
    assert suite.get("failures") == "0" and int(suite.get("tests", 0)) == len(d["checks"])
    props = {str(p.get("name")): str(p.get("value")) for p in suite.iter("property")}
    assert props["link_kind"] == "stream" and props["link_physical"] == "False"
    assert float(props["link_host_to_device_bytes_per_s"]) == pytest.approx(
        d["link"]["host_to_device"]["bytes_per_s"])
    assert not any(k.endswith("_utilization") for k in props)  # --baud 0: no physical rate
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 31 and rows[0].startswith("index,in0")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_fails_with_exit_9_on_wrong_prediction(trained_registry: tuple[Config, str],
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from tinyship.cli import main

    cfg, version = trained_registry
    junit = tmp_path / "hil.xml"
    with pytest.raises(SystemExit) as e:
        main(["hil", "--registry", str(cfg.registry_path), "--model", version, "--baud", "0",
              "--limit", "20", "--faults", "wrong_at=2", "--junit", str(junit)])
    captured = capsys.readouterr()
    assert e.value.code == 9 and "parity" in captured.err
    failed = [c.get("name") for c in ET.parse(junit).getroot().findall("testcase")
              if c.find("failure") is not None]
    assert "parity" in failed


def test_cli_device_error_is_exit_8(capsys: pytest.CaptureFixture[str],
                                    trained_registry: tuple[Config, str]) -> None:
    from tinyship.cli import main

    cfg, version = trained_registry
    with pytest.raises(SystemExit) as e:
        main(["hil", "--device", "/dev/tinyship-no-such-port", "--registry",
              str(cfg.registry_path), "--model", version])
    assert e.value.code == 8 and "tinyship-no-such-port" in capsys.readouterr().err


# (fault, outcome): "ok" = completes correct and passes; "recovered" = passes with retries > 0;
# otherwise the name of the check that must fail (or "device_error").
FAULT_CASES: list[tuple[dict[str, Any], str]] = [
    ({"corrupt_rx": 0.01}, "recovered"),
    # 0.2 % per byte: a ~270-byte HELLO reply then arrives whole about 58 % of the time, so
    # six attempts recover it; at 1 % (7 % whole) recovery was a matter of the seed.
    ({"corrupt_tx": 0.002}, "recovered"),
    ({"drop_rx": 0.01}, "recovered"),
    ({"drop_tx": 0.004}, "recovered"),
    ({"garbage": 0.5}, "ok"),
    ({"reset_after": 3}, "no_reset"),
    ({"hang_after": 3}, "no_reset"),
    ({"wrong_version": "v9999"}, "model_version"),
    ({"wrong_hash": True}, "model_sha256"),
    ({"wrong_prediction": 0.1}, "parity"),
    ({"wrong_at": (5,)}, "parity"),
    ({"bad_model_crc": True}, "model_crc"),
]


@pytest.mark.parametrize(("faults", "outcome"), FAULT_CASES,
                         ids=[",".join(f) for f, _ in FAULT_CASES])
def test_faults(trained_registry: tuple[Config, str], faults: dict[str, Any],
                outcome: str) -> None:
    cfg, version = trained_registry
    t0 = time.monotonic()
    with _board(trained_registry, **faults) as vb:
        try:
            report = validate(vb.url, cfg.registry_path, version, board_cfg=cfg.board, baud=0,
                              limit=LIMIT, timeout_s=0.3)
        except DeviceError as e:
            assert outcome == "device_error", f"unexpected DeviceError: {e}"
            return
        finally:
            assert time.monotonic() - t0 < FAULT_TIME_LIMIT_S
    failed = [c.name for c in report.failed_checks]
    if outcome in ("ok", "recovered"):
        assert report.passed, report.failed_checks
        assert report.mismatches == 0 and report.vectors == LIMIT
        if outcome == "recovered":
            assert report.retries > 0 and report.errors > 0
        return
    assert not report.passed and outcome in failed, failed
    if "wrong" in next(iter(faults)):
        # the lie is caught by its own check; the rest of the data is still right
        assert report.mismatches > 0 if outcome == "parity" else report.mismatches == 0
    if outcome == "no_reset":
        assert report.mismatches == 0, "a reboot must not corrupt results"


def test_no_pass_for_wrong_predictions_even_with_tolerance(
        trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    with _board(trained_registry, wrong_at=(1, 2), wrong_delta=1) as vb:
        strict = validate(vb.url, cfg.registry_path, version, baud=0, limit=10)
    assert not strict.passed and strict.mismatches == 2 and strict.max_lsb_diff >= 1
    with _board(trained_registry, wrong_at=(1, 2), wrong_delta=1) as vb:
        loose = validate(vb.url, cfg.registry_path, version, baud=0, limit=10, tolerance_lsb=1)
    assert loose.mismatches == 0  # within the configured tolerance: that is what it is for


def test_client_pipelines_and_matches_reference(trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    with np.load(cfg.registry_path / version / "test_set.npz") as z:
        x, ref = z["x_int8"], z["reference_int8"].reshape(len(z["x_int8"]), -1)
    with _board(trained_registry) as vb, DeviceClient.open(vb.url, window=3) as c:
        r = c.infer_stream(x, batch_size=7)
        assert np.array_equal(r.outputs, ref) and len(r.batch_sizes) == -(-len(x) // 7)
        assert c.stats().inference_count == len(x)
        assert c.counters.max_in_flight == 3  # pipelined, never more than the window
        assert c.batch_size() == P.max_batch(x.shape[1], ref.shape[1])


def test_stream_reports_the_bytes_that_moved_each_way(
        trained_registry: tuple[Config, str]) -> None:
    """What the client says it wrote and read while streaming is what the board received
    and sent: the link figures are made of bytes that moved, not of frame arithmetic."""
    cfg, version = trained_registry
    with np.load(cfg.registry_path / version / "test_set.npz") as z:
        x = z["x_int8"].reshape(len(z["x_int8"]), -1)
    with _board(trained_registry) as vb, DeviceClient.open(vb.url) as c:
        c.hello()
        s0 = vb.stats_snapshot()
        r = c.infer_stream(x, batch_size=9)
        s1 = vb.stats_snapshot()
    assert r.bytes_tx == s1.bytes_rx - s0.bytes_rx > len(x) * x.shape[1]
    assert r.bytes_rx == s1.bytes_tx - s0.bytes_tx > 0
    assert r.bytes_tx + r.bytes_rx == r.wire_bytes  # nothing resent on a clean link


def test_link_utilisation_is_per_direction_of_the_uart_byte_rate(
        trained_registry: tuple[Config, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """On a board that reports a UART, each direction's bytes/s is divided by baud/10. The
    stream's duration is pinned, so the figures follow from the bytes alone."""
    import dataclasses

    from tinyship.device.virtual import VirtualBoard

    cfg, version = trained_registry
    moved: dict[str, int] = {}
    real = DeviceClient.infer_stream

    def pinned(self: DeviceClient, x: np.ndarray, **kw: Any) -> Any:
        s0 = vb.stats_snapshot()
        r = real(self, x, **kw)
        s1 = vb.stats_snapshot()
        moved.update(rx=s1.bytes_rx - s0.bytes_rx, tx=s1.bytes_tx - s0.bytes_tx)
        return dataclasses.replace(r, elapsed_s=2.0)

    monkeypatch.setattr(DeviceClient, "infer_stream", pinned)
    with VirtualBoard(cfg.registry_path, version, baud=115200, boot_delay_s=0.05) as vb:
        report = validate(vb.url, cfg.registry_path, version, limit=40,
                          robustness_probe=False)
        overflow = vb.stats_snapshot().overflow_rx
    assert report.passed, report.failed_checks
    link = report.link
    assert (link["kind"], link["physical"], link["baud"], link["source"]) == (
        "uart", True, 115200, "device")
    assert link["byte_rate"] == 11520.0 and link["rx_window"] == 256
    h2d, d2h, pay = link["host_to_device"], link["device_to_host"], link["input_payload"]
    assert h2d["bytes"] == moved["rx"] and d2h["bytes"] == moved["tx"]  # the board's count
    assert pay["bytes"] == 40 * report.expected["input_size"]
    for d in (h2d, d2h, pay):
        assert d["bytes_per_s"] == d["bytes"] / 2.0
        assert d["utilization"] == d["bytes"] / 2.0 / 11520.0
    assert link["vectors_per_s"] == report.throughput_vps == 20.0
    assert overflow == 0 and report.retries == 0
    # the device's own word (INFO) and the client's window bookkeeping are in the report
    assert report.device["link"] == {"kind": 1, "baud": 115200, "rx_window": 256,
                                     "kind_name": "uart"}
    assert report.device["link_counters"]["max_behind_bytes"] <= 256


@pytest.mark.parametrize(("device", "user_baud", "want"), [
    (P.LinkInfo(P.LinkKind.UART, 115200, 256), None, ("uart", 115200, "device")),
    (P.LinkInfo(P.LinkKind.UART, 57600, 256), 115200, ("uart", 57600, "device")),
    # a USB CDC board or a pty: the port's baud rate is not a byte rate (no "5175 %")
    (P.LinkInfo(P.LinkKind.USB_CDC, 0, 0), 115200, ("usb-cdc", None, "device")),
    (P.LinkInfo(P.LinkKind.STREAM, 0, 0), 115200, ("stream", None, "device")),
    # firmware that does not say: physical only when the user passed --baud
    (None, 115200, ("uart", 115200, "user")),
    (P.LinkInfo(P.LinkKind.UNKNOWN, 0, 0), 9600, ("uart", 9600, "user")),
    (None, None, ("unknown", None, "none")),
])
def test_which_baud_rates_are_physical(device: P.LinkInfo | None, user_baud: int | None,
                                       want: tuple[str, int | None, str]) -> None:
    from tinyship.hil.linkrate import link_figures, physical_rate

    rate = physical_rate(device, user_baud)
    assert (rate.kind, rate.baud, rate.source) == want
    fig = link_figures(vectors=100, input_size=8, bytes_tx=5000, bytes_rx=3000, elapsed_s=0.5,
                       rate=rate, rx_window=None)
    utils = [fig[k]["utilization"] for k in ("host_to_device", "device_to_host",
                                             "input_payload")]
    if want[1] is None:
        assert utils == [None, None, None] and not fig["physical"]
    else:
        br = want[1] / 10
        assert utils == [10000 / br, 6000 / br, 1600 / br] and fig["byte_rate"] == br


def test_cli_baud_means_a_physical_uart_only_when_given(
        trained_registry: tuple[Config, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import tinyship.hil
    from tinyship.cli import main
    from tinyship.hil import Check, Report

    cfg, version = trained_registry
    seen: list[tuple[int, bool]] = []

    def fake_validate(url: str, *a: Any, baud: int, baud_is_physical: bool, **kw: Any) -> Report:
        seen.append((baud, baud_is_physical))
        return Report(device={}, expected={"version": version}, checks=[Check("x", True, "")])

    monkeypatch.setattr(tinyship.hil, "validate", fake_validate)
    for extra in ([], ["--baud", "9600"]):
        with pytest.raises(SystemExit) as e:
            main(["hil", "--device", "socket://127.0.0.1:9", "--registry",
                  str(cfg.registry_path), "--model", version, *extra])
        assert e.value.code == 0
    assert seen == [(115200, False), (9600, True)]
    assert capsys.readouterr().out.count("link: no link figures") == 2  # nothing streamed


def test_client_keeps_frames_behind_the_oldest_within_the_uart_window(
        trained_registry: tuple[Config, str]) -> None:
    """At 115200 the board buffers 256 bytes while busy. The client sizes its batches for
    that window and never has more than 256 bytes sent behind the oldest unanswered
    request, so nothing overflows; a client that ignores the window loses bytes."""
    from tinyship.device.client import windowed_batch
    from tinyship.device.virtual import VirtualBoard

    cfg, version = trained_registry
    with np.load(cfg.registry_path / version / "test_set.npz") as z:
        x, ref = z["x_int8"], z["reference_int8"]
    reps = -(-400 // len(x))  # a few full batches
    x, ref = np.tile(x.reshape(len(x), -1), (reps, 1)), np.tile(ref.reshape(len(ref), -1),
                                                                  (reps, 1))
    with VirtualBoard(cfg.registry_path, version, baud=115200, boot_delay_s=0.05) as vb:
        with DeviceClient.open(vb.url) as c:
            info = c.hello()
            assert info.link == P.LinkInfo(P.LinkKind.UART, 115200, 256) and c.rx_window == 256
            r = c.infer_stream(x)
            assert np.array_equal(r.outputs, ref)
            assert c.batch_size() == windowed_batch(x.shape[1], ref.shape[1], 256) < \
                P.max_batch(x.shape[1], ref.shape[1])
            assert c.counters.max_in_flight >= 2  # pipelined ...
            assert 0 < c.counters.max_behind_bytes <= 256  # ... within the window
            assert c.counters.retries == 0 and vb.stats_snapshot().overflow_rx == 0
        with DeviceClient.open(vb.url, rx_window=0) as blind:  # 0: ignore the window
            r = blind.infer_stream(x)
            assert np.array_equal(r.outputs, ref)  # recovered by resending ...
            assert blind.counters.retries > 0  # ... what the full buffer dropped
        assert vb.stats_snapshot().overflow_rx > 0


def test_a_smaller_receive_buffer_is_advertised_and_respected(
        trained_registry: tuple[Config, str]) -> None:
    from tinyship.device.client import windowed_batch
    from tinyship.device.virtual import VirtualBoard

    cfg, version = trained_registry
    with np.load(cfg.registry_path / version / "test_set.npz") as z:
        x, ref = z["x_int8"], z["reference_int8"]
    x, ref = np.tile(x.reshape(len(x), -1), (2, 1)), np.tile(ref.reshape(len(ref), -1), (2, 1))
    with VirtualBoard(cfg.registry_path, version, baud=115200, boot_delay_s=0.05,
                      rx_buffer=64) as vb, DeviceClient.open(vb.url) as c:
        assert c.hello().link == P.LinkInfo(P.LinkKind.UART, 115200, 64)
        r = c.infer_stream(x)
        assert np.array_equal(r.outputs, ref)
        assert set(r.batch_sizes[:-1]) == {windowed_batch(x.shape[1], ref.shape[1], 64)}
        assert c.counters.max_behind_bytes <= 64 and c.counters.retries == 0
        assert vb.stats_snapshot().overflow_rx == 0


def test_board_vanishing_mid_session_is_a_device_error(
        trained_registry: tuple[Config, str]) -> None:
    vb = _board(trained_registry)
    vb.start()
    c = DeviceClient.open(vb.url, reply_timeout_s=0.2)
    try:
        c.hello()
        vb.stop()  # the port goes away under an open connection
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"socket://127\.0\.0\.1"):
            c.ping()
        assert time.monotonic() - t0 < 10.0
    finally:
        c.close()
        vb.stop()
