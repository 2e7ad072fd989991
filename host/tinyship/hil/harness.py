"""Hardware-in-the-loop validation of one registry version on a connected board.

`validate(url, registry_root, version, board_cfg=...)` connects, reads the device's INFO,
streams the version's held-out test set (`x_int8`) through INFER and compares, check by
check, with what the registry recorded: identity (protocol, model version, SHA-256, CRC,
self-test), bit parity with the host TFLM reference (`reference_int8`), the task metric,
agreement metrics (as ST's validate-on-target), latency against the board's budget, and
link figures per direction (`linkrate`). It returns a `Report`; the CLI turns a failed
report into exit code 9. Device and link failures propagate as `DeviceError` (exit code 8).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyship.device import protocol as P
from tinyship.device.client import (
    PIPELINE_WINDOW,
    REPLY_TIMEOUT_S,
    DeviceClient,
    DeviceReplyError,
)
from tinyship.device.transport import BANNER_TIMEOUT_S
from tinyship.hil.linkrate import link_figures, physical_rate
from tinyship.hil.report import Check, Report

if TYPE_CHECKING:
    from tinyship.registry import Registry

#: Allowed relative difference between the device's task metric and the host reference's
#: on the same vectors (0 LSB parity makes them equal; this absorbs float summation order).
METRIC_REL_TOLERANCE = 1e-6
#: Bytes of the PING used for the error-handling probe.
ROBUSTNESS_PING = b"hil-alive"
#: Sends of the corrupted probe frame: on a noisy link the device's error reply can itself
#: arrive corrupted (and is then dropped), as any reply can; one clean BAD_CRC answer is proof.
ERROR_PROBE_ATTEMPTS = 3


@dataclass
class TestSet:
    x: np.ndarray               # raw float features
    y: np.ndarray               # target or class index
    x_int8: np.ndarray          # [n, input_size]
    reference_int8: np.ndarray  # [n, output_size] (host TFLM, reference kernels)
    total: int = 0              # vectors in the whole test set (before `limit`)


def load_test_set(registry: Registry, version: str, limit: int | None = None) -> TestSet:
    """The version's held-out vectors, from hash-checked bytes: a damaged test set is
    refused by name instead of failing inside numpy's zip reader."""
    import io
    import zipfile

    from tinyship.errors import RegistryError

    data = registry.read_artifact(version, "test_set.npz")
    try:
        with np.load(io.BytesIO(data)) as z:
            ts = TestSet(z["x"], z["y"], z["x_int8"], z["reference_int8"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise RegistryError(f"{version}/test_set.npz: unreadable test set ({e})") from None
    n = len(ts.x_int8) if limit is None else max(0, min(limit, len(ts.x_int8)))
    return TestSet(ts.x[:n], ts.y[:n], ts.x_int8[:n].reshape(n, -1),
                   ts.reference_int8[:n].reshape(n, -1), total=len(ts.x_int8))


def _pct(a: np.ndarray, q: float) -> float | None:
    return float(np.percentile(a, q)) if len(a) else None


def agreement(device: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, relative L2 error and cosine similarity of device vs reference outputs
    (floats in target units), as STM32Cube.AI's validate-on-target reports them."""
    d = np.asarray(device, dtype=np.float64).reshape(-1)
    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    if d.size == 0:
        return {}
    err = d - r
    rn, dn = float(np.linalg.norm(r)), float(np.linalg.norm(d))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "l2r": float(np.linalg.norm(err) / rn) if rn > 0 else float(np.linalg.norm(err)),
        "cosine": float(d @ r / (dn * rn)) if dn > 0 and rn > 0 else float(dn == rn),
    }


def task_metric(task: str, y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    from tinyship.train.metrics import classification_metrics, regression_metrics

    if task == "classification":
        return classification_metrics(y, np.argmax(pred, axis=1), n_classes)
    return regression_metrics(y, pred.reshape(len(pred), -1)[:, 0])


def validate(
    url: str,
    registry_root: Path,
    version: str | None,
    *,
    board_cfg: Any = None,
    tolerance_lsb: int = 0,
    baud: int = 115_200,
    baud_is_physical: bool = False,
    limit: int | None = None,
    timeout_s: float = REPLY_TIMEOUT_S,
    window: int = PIPELINE_WINDOW,
    banner_timeout_s: float = BANNER_TIMEOUT_S,
    robustness_probe: bool = True,
    client: DeviceClient | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Validate registry `version` (None: production, else latest) on the board at `url`.

    `baud` is the line rate the port is opened with. Link utilisation (per direction, of
    `baud / 10` bytes/s) is computed only when the link is a physical UART: when the device
    reports one in INFO (its baud rate counts), or, for firmware that does not report its
    link, when `baud_is_physical` (the user passed --baud for a UART).
    `client`: an already connected client (the pytest suite shares one); else one is
    opened on `url` and closed at the end. `on_progress(done, total)` while streaming.
    """
    from tinyship.registry import Registry

    t_start = time.monotonic()
    reg = Registry(Path(registry_root))
    version = reg.resolve(version)
    manifest = reg.manifest(version)
    ts = load_test_set(reg, version, limit)
    model = manifest.get("model", {})
    expected = {"version": version, "sha256": model.get("sha256"), "crc32": model.get("crc32"),
                "input_size": int(ts.x_int8.shape[1]),
                "output_size": int(ts.reference_int8.shape[1])}
    budget_us = int(getattr(board_cfg, "latency_budget_us", 0) or 0) or None

    own = client is None
    if client is None:
        client = DeviceClient.open(url, baud=baud, reply_timeout_s=timeout_s, window=window,
                                   banner_timeout_s=banner_timeout_s)
    try:
        return _validate(client, manifest, ts, expected, budget_us=budget_us,
                         tolerance_lsb=tolerance_lsb,
                         user_baud=baud if baud_is_physical and baud > 0 else None,
                         t_start=t_start,
                         robustness_probe=robustness_probe, on_progress=on_progress)
    finally:
        if own:
            client.close()


def _validate(client: DeviceClient, manifest: dict[str, Any], ts: TestSet,
              expected: dict[str, Any], *, budget_us: int | None, tolerance_lsb: int,
              user_baud: int | None, t_start: float, robustness_probe: bool,
              on_progress: Callable[[int, int], None] | None) -> Report:
    info = client.hello()
    report = Report(device=info.to_dict(), expected=expected)
    checks = report.checks
    k0 = client.counters  # deltas from here: a shared client has counted earlier work
    c0 = k0.retries, k0.errors, k0.reconnects, k0.resets_seen

    # Version 2 only added the slot commands: a version-1 board validates the same way.
    v = info.protocol_version
    checks.append(Check(
        "protocol_version", v is not None and P.MIN_PROTOCOL_VERSION <= v <= P.PROTOCOL_VERSION,
        f"device speaks protocol {v}, host {P.MIN_PROTOCOL_VERSION}..{P.PROTOCOL_VERSION}"))
    checks.append(Check(
        "model_version", info.model_version == expected["version"],
        f"device reports model {info.model_version!r}, registry expects "
        f"{expected['version']!r}"))
    checks.append(Check(
        "model_sha256", info.model_sha256 == expected["sha256"],
        f"device {info.model_sha256}, registry {expected['sha256']}"))
    crc_ok = info.model_crc_ok == P.CrcCheck.OK and (
        expected["crc32"] is None or info.model_crc32 == expected["crc32"])
    crc_word = ("?" if info.model_crc_ok is None else
                P.CrcCheck(info.model_crc_ok).name.lower() if info.model_crc_ok in (0, 1, 2)
                else str(info.model_crc_ok))
    checks.append(Check(
        "model_crc", crc_ok,
        f"boot CRC check {crc_word}; device CRC-32 "
        f"{info.model_crc32 if info.model_crc32 is None else hex(info.model_crc32)}, registry "
        f"{expected['crc32'] if expected['crc32'] is None else hex(expected['crc32'])}"))
    st = info.self_test
    checks.append(Check(
        "self_test", st is not None and st.passed,
        "no self-test record" if st is None else
        f"{st.status_name}: {st.vectors} golden vectors, max diff {st.max_diff_lsb} LSB"
        + ("" if st.failed_vector == 0xFFFF else f", first failure at vector {st.failed_vector}")))
    io_ok = (info.input_size == expected["input_size"]
             and info.output_size == expected["output_size"])
    q_in, q_out = manifest.get("model", {}).get("input", {}), manifest.get("model", {}).get(
        "output", {})
    quant_ok = io_ok and all(
        a is not None and b is not None and np.isclose(a, b, rtol=1e-6)
        for a, b in ((info.input_scale, q_in.get("scale")), (info.output_scale, q_out.get("scale")),
                     (info.input_zero_point, q_in.get("zero_point")),
                     (info.output_zero_point, q_out.get("zero_point"))))
    # Target units (results% on the device); firmware older than the INFO tags omits them.
    t_reg = (float(q_out.get("target_mean", 0.0)), float(q_out.get("target_scale", 1.0)))
    t_dev = (info.target_mean, info.target_scale)
    reported = t_dev != (None, None)
    target_ok = not reported or all(
        d is not None and bool(np.isclose(d, r, rtol=1e-6))
        for d, r in zip(t_dev, t_reg, strict=True))
    target_word = (f"target mean/scale device {t_dev[0]}/{t_dev[1]}, registry "
                   f"{t_reg[0]}/{t_reg[1]}" if reported else
                   "target units not reported by the device (older firmware)")
    checks.append(Check(
        "io_contract", quant_ok and target_ok,
        f"device in/out {info.input_size}/{info.output_size} int8, scale "
        f"{info.input_scale}/{info.output_scale}, zero point {info.input_zero_point}/"
        f"{info.output_zero_point}; registry {expected['input_size']}/{expected['output_size']}"
        f", {q_in.get('scale')}/{q_out.get('scale')}, {q_in.get('zero_point')}/"
        f"{q_out.get('zero_point')}; {target_word}"))

    n = len(ts.x_int8)
    report.vectors = n
    if not io_ok:
        checks.append(Check("parity", False, "not run: the device's input/output sizes differ "
                                             "from the registry version's"))
        _finish(report, client, c0, t_start)
        return report

    client.reset_stats()
    try:
        result = client.infer_stream(
            ts.x_int8, on_progress=None if on_progress is None else (lambda k: on_progress(k, n)))
    except DeviceReplyError as e:
        if e.error.code not in (P.Status.MODEL_INVALID, P.Status.INFERENCE_FAILED):
            raise
        checks.append(Check("parity", False, f"not run: the device refused inference: {e.error}"))
        _finish(report, client, c0, t_start)
        return report
    dev, ref = result.outputs.astype(np.int16), ts.reference_int8.astype(np.int16)
    diff = np.abs(dev - ref)
    per_vec = diff.max(axis=1) if n else np.zeros(0, np.int16)
    report.mismatches = int((per_vec > tolerance_lsb).sum())
    report.max_lsb_diff = int(per_vec.max()) if n else 0
    report.inputs, report.device_outputs = ts.x_int8, result.outputs
    report.reference_outputs, report.latencies = ts.reference_int8, result.latencies_us
    first = int(np.argmax(per_vec > tolerance_lsb)) if report.mismatches else None
    checks.append(Check(
        "parity", n > 0 and report.mismatches == 0,
        f"{report.mismatches} of {n} vectors differ from the host TFLM reference by more than "
        f"{tolerance_lsb} LSB (max {report.max_lsb_diff} LSB"
        + (f", first at vector {first}" if first is not None else "") + ")"
        if n else "no test vectors"))

    # task metric on outputs in target units vs the registry's recorded int8 metric
    from tinyship.convert.runtimes import to_target_units
    from tinyship.train.metrics import main_metric

    task = str(manifest.get("task", "regression"))
    name, higher_better = main_metric(task)
    n_classes = max(len(manifest.get("classes") or []), ref.shape[1])
    registry_value = manifest.get("metrics", {}).get("int8", {}).get(name)
    if n:
        dq_dev, dq_ref = to_target_units(dev, q_out), to_target_units(ref, q_out)
        m_dev = task_metric(task, ts.y, dq_dev, n_classes)
        m_ref = task_metric(task, ts.y, dq_ref, n_classes)
        agree = agreement(dq_dev, dq_ref)
        if task == "classification":
            agree["top1_agreement"] = float(np.mean(dq_dev.argmax(1) == dq_ref.argmax(1)))
            agree["confusion_matrix"] = m_dev["confusion_matrix"]
        dv, rv = float(m_dev[name]), float(m_ref[name])
        worse = (rv - dv) if higher_better else (dv - rv)
        ok = worse <= METRIC_REL_TOLERANCE * max(abs(rv), 1e-12)
        full = n == ts.total
        report.metric = {"name": name, "device": dv, "registry": registry_value,
                         "reference": rv, "vectors": n, "full_test_set": full,
                         "agreement": agree}
        checks.append(Check(
            "metric", ok,
            f"{name} on the device {dv:.6g}, host reference on the same {n} vectors {rv:.6g}, "
            f"registry (int8, full test set) {registry_value}"))

    lat = result.latencies_us.astype(np.float64)
    report.latency_us = {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "p99": _pct(lat, 99),
                         "max": float(lat.max()) if len(lat) else None}
    rtt = np.asarray(result.round_trips_s) * 1e3
    report.round_trip_ms = {"p50": _pct(rtt, 50), "p95": _pct(rtt, 95)}
    p99 = report.latency_us["p99"]
    checks.append(Check(
        "latency", budget_us is None or (p99 is not None and p99 <= budget_us),
        f"device p99 {p99} µs, max {report.latency_us['max']} µs, budget "
        f"{budget_us if budget_us is not None else 'none'} µs"))

    if n and result.elapsed_s > 0:
        report.link = link_figures(
            vectors=n, input_size=int(info.input_size or 0), bytes_tx=result.bytes_tx,
            bytes_rx=result.bytes_rx, elapsed_s=result.elapsed_s,
            rate=physical_rate(info.link, user_baud), rx_window=client.rx_window)
        report.throughput_vps = report.link["vectors_per_s"]
    dev_stats = client.stats()
    report.device["stats"] = dev_stats.to_dict()
    if robustness_probe:
        checks.append(error_handling_check(client))
    _finish(report, client, c0, t_start, first_info=info)
    return report


def error_handling_check(client: DeviceClient) -> Check:
    """Send a frame with a corrupted CRC: the device must answer TS_ERR_BAD_CRC and then
    still answer PING (a broken device hangs, resets or stays silent)."""
    wire = bytearray(P.encode_frame(P.Command.PING, 0x1234, ROBUSTNESS_PING))
    wire[-2] ^= 0x5A  # a CRC byte (never 0x00 after the flip: 0x5A != byte)
    if wire[-2] == 0:
        wire[-2] = 0x01
    for attempt in range(1, ERROR_PROBE_ATTEMPTS + 1):
        if attempt > 1:
            client.counters.retries += 1
        client.send_raw(bytes(wire))
        frames = client.read_frames(min(1.0, client.reply_timeout_s))
        errs = [P.parse_error(f.payload) for f in frames if f.is_error]
        ok = any(e.code == P.Status.BAD_CRC for e in errs)
        if ok:
            break
    got = ", ".join(str(e) for e in errs) or "nothing"
    if attempt > 1:
        got += f" (send {attempt} of {ERROR_PROBE_ATTEMPTS})"
    try:
        client.ping(ROBUSTNESS_PING)
    except Exception as e:  # a failure here is the finding, not a crash of the harness
        return Check("error_handling", False, f"after a corrupted frame (answered: {got}) the "
                                              f"device no longer answers PING: {e}")
    return Check("error_handling", ok,
                 f"corrupted frame answered with {got}; PING afterwards answered")


def _finish(report: Report, client: DeviceClient, c0: tuple[int, int, int, int], t_start: float,
            first_info: P.DeviceInfo | None = None) -> None:
    """Counters, and a second HELLO: the board must not have rebooted or changed model."""
    if first_info is not None:
        again = client.hello()
        k = client.counters
        resets, reconnects = k.resets_seen - c0[3], k.reconnects - c0[2]
        rebooted = resets > 0 or (
            again.boot_count is not None and first_info.boot_count is not None
            and again.boot_count != first_info.boot_count) or (
            again.uptime_us is not None and first_info.uptime_us is not None
            and again.uptime_us < first_info.uptime_us)
        same = (again.model_version, again.model_sha256) == (first_info.model_version,
                                                             first_info.model_sha256)
        why = []
        if rebooted:
            why.append(f"board rebooted during validation ({resets} boot banner(s) "
                       f"mid-run, boot count {first_info.boot_count} -> {again.boot_count})")
        if reconnects:
            why.append(f"the port was reopened {reconnects} time(s) because the board "
                       "stopped answering (reopening resets it)")
        if not same:
            why.append(f"model changed to {again.model_version} {again.model_sha256}")
        report.checks.append(Check(
            "no_reset", not why, "; ".join(why) or "no reboot or hang during validation"))
    report.retries = client.counters.retries - c0[0]
    report.errors = client.counters.errors - c0[1]
    # the client's counters (retries, timeouts, window); `device["link"]` is the INFO link tag
    report.device["link_counters"] = client.counters.to_dict()
    report.duration_s = time.monotonic() - t_start
