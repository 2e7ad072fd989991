"""Full firmware images on the virtual board (issue 12): the image format, the board's ROM
and bootloader over its simulated NOR application region, and the host's uploader.

An image of another registry version, uploaded through the bootloader, runs with its own
model, golden vectors and firmware version, and survives an emulator restart; a power cut
at any erase or program of an upload leaves the board on its old firmware or in its
bootloader, and a second upload always recovers it; a confirmed slot model keeps running
over a new image (as with ESP32's serial esptool); damaged images, unaligned or unerased
writes and a hash mismatch are refused; a port without a bootloader is an UploadError.
The registry is the committed fixture (`versions_registry`: v0003 is a distinct model).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import select
import socket
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from tinyship.cli import cli
from tinyship.deploy.image import UploadError
from tinyship.deploy.virtual_upload import upload_virtual
from tinyship.device import bootloader_protocol as B
from tinyship.device import protocol as P
from tinyship.device.client import DeviceClient
from tinyship.device.transport import Transport
from tinyship.device.virtual import Faults, VirtualBoard, _core
from tinyship.device.virtual.bootloader import APP_FILE, APP_REGION_BYTES, banner
from tinyship.device.virtual.fwimage import (
    HEADER_BYTES,
    build_virtual_image,
    encode_virtual_image,
    load_firmware,
    parse_virtual_image,
)
from tinyship.errors import DeviceTimeout, ExitCode
from tinyship.registry import Registry


@contextlib.contextmanager
def _board(root: Path, state: Path | None = None, **kw: Any) -> Iterator[VirtualBoard]:
    """The board built with v0001, unpaced, no boot delay; a USB board (no reset on open)."""
    with VirtualBoard(root, "v0001", state_dir=state, baud=0, boot_delay_s=0,
                      reset_on_open=False, **kw) as vb:
        yield vb


def _hello(url: str) -> P.DeviceInfo:
    with DeviceClient.open(url) as c:
        return c.hello()


def _app_silent(url: str) -> None:
    """The application protocol gets no answer (a board that does not come back)."""
    client = DeviceClient(Transport(url))
    try:
        with pytest.raises(DeviceTimeout):
            client.connect(banner_timeout_s=0.5)
    finally:
        client.close()


# --- the image format ---------------------------------------------------------------------


def test_an_image_round_trips_and_its_bytes_are_deterministic(versions_registry: Path) -> None:
    reg = Registry(versions_registry)
    image = build_virtual_image(reg, "v0003", firmware_version="0.9.3")
    assert build_virtual_image(reg, "v0003", firmware_version="0.9.3") == image
    assert build_virtual_image(reg, "v0003") != image  # the firmware version is part of it
    parsed = parse_virtual_image(image)
    fw = load_firmware(reg, "v0003")
    assert (parsed.version, parsed.firmware_version, parsed.size) == ("v0003", "0.9.3",
                                                                       len(image))
    assert parsed.sha256 == hashlib.sha256(image).hexdigest()
    assert parsed.model == fw.model and parsed.manifest == fw.manifest
    back = parsed.to_firmware()
    assert back.firmware_version == "0.9.3" and back.sha256 == fw.sha256
    for got, want in ((back.golden_inputs, fw.golden_inputs),
                      (back.golden_outputs, fw.golden_outputs)):
        assert got.dtype == np.int8 and np.array_equal(got, want) and len(got) == 32


def _reseal(body: bytes) -> bytes:
    """`body` (header + blobs) with a correct trailer."""
    return body + struct.pack("<I32s", zlib.crc32(body), hashlib.sha256(body).digest())


def _damaged(image: bytes, how: str, reg: Registry) -> bytes:
    fw = load_firmware(reg, "v0003")
    return {
        "short header": image[:HEADER_BYTES - 1],
        "erased": b"\xff" * 64,
        "magic": b"TSFX" + image[4:],
        "format": image[:4] + struct.pack("<I", 2) + image[8:],
        "truncated": image[:-1],
        "trailing byte": image + b"\x00",
        "crc": image[:100] + bytes([image[100] ^ 1]) + image[101:],
        "sha": image[:-32] + bytes(32),
        "metadata": encode_virtual_image(replace(fw, manifest={"model": {}})),
        "model": encode_virtual_image(replace(fw, model=fw.model[:-4] + b"\0\0\0\0")),
        "golden": encode_virtual_image(replace(fw, golden_inputs=fw.golden_inputs[:, :3])),
        "resealed garbage": _reseal(image[:HEADER_BYTES] + b"[" + image[HEADER_BYTES + 1:-36]),
    }[how]


@pytest.mark.parametrize(("how", "message"), [
    ("short header", "truncated: 23 bytes, the header alone is 24"),
    ("erased", r"erased \(no image\)"),
    ("magic", "not a virtual firmware image"),
    ("format", "image format 2, this tinyship reads 1"),
    ("truncated", "its header says"),
    ("trailing byte", "its header says"),
    ("crc", "CRC-32 mismatch"),
    ("sha", "SHA-256 mismatch"),
    ("metadata", "metadata unreadable: KeyError"),
    ("model", r"the model is not the one its manifest \(v0003\) names"),
    ("golden", "golden vectors of 96.32 bytes do not fit 32 vectors of 8 in, 1 out"),
    ("resealed garbage", "metadata unreadable"),
])
def test_parse_refuses_a_damaged_image(versions_registry: Path, how: str,
                                       message: str) -> None:
    reg = Registry(versions_registry)
    image = build_virtual_image(reg, "v0003")
    with pytest.raises(ValueError, match=message):
        parse_virtual_image(_damaged(image, how, reg))


# --- upload, boot, restart ------------------------------------------------------------------


def test_an_uploaded_image_runs_and_survives_an_emulator_restart(
        versions_registry: Path, variant: Any, tmp_path: Path) -> None:
    root, state = versions_registry, tmp_path / "state"
    image = build_virtual_image(Registry(root), "v0003", firmware_version="0.9.3")
    steps: list[tuple[str, int, int]] = []
    with _board(root, state) as vb:
        assert _hello(vb.url).model_version == "v0001"
        result = upload_virtual(vb.url, image, baud=0,
                                progress=lambda *s: steps.append(s))
        info = _hello(vb.url)
        assert vb.booted == "image"
    assert (result.tool, result.verifies, result.exit_code, result.port) == (
        "virtual-bootloader", "CRC-32/SHA-256 readback", 0, vb.url)
    assert result.tail[-1] == "booted" and hashlib.sha256(image).hexdigest() in result.tail[-2]
    assert [s for s, _, _ in steps if s != "write"] == ["sync", "erase", "verify", "boot"]
    writes = [d for s, d, _ in steps if s == "write"]
    assert writes == [min(len(image), k * B.MAX_DATA) for k in range(1, len(writes) + 1)]
    assert info.model_version == "v0003" and info.model_sha256 == variant.sha256
    assert info.firmware_version == "0.9.3" and info.board == "virtual-nano33ble"
    assert info.self_test is not None and info.self_test.status == P.SelfTestStatus.PASS
    assert info.self_test.vectors == 32
    doc = json.loads((state / "state.json").read_text())
    assert doc["app"] == {"status": "valid", "firmware_version": "0.9.3",
                          "model_version": "v0003", "bytes": len(image),
                          "image_sha256": hashlib.sha256(image).hexdigest()}
    assert doc["slots"]["a"] == {"model_version": "v0003", "sha256": variant.sha256,
                                 "firmware_version": "0.9.3"}
    assert (state / APP_FILE).stat().st_size == APP_REGION_BYTES

    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyship", "emulator", "--registry", str(root), "--model",
         "v0001", "--state", str(state), "--baud", "0", "--boot-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "emulator printed nothing within 60 s"
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://"), url or proc.stderr.read()
        again = _hello(url)
        assert (again.model_version, again.firmware_version) == ("v0003", "0.9.3")
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        assert ("--model ignored: the state's flash holds v0003 (firmware 0.9.3), uploaded "
                "as a full image; it runs") in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_an_upload_over_a_paced_uart_to_a_board_that_resets_on_open(
        versions_registry: Path) -> None:
    """The emulator's defaults: 115200 baud with a 256-byte receive buffer, and a reset
    (with a boot delay) each time the uploader opens the port."""
    image = build_virtual_image(Registry(versions_registry), "v0003")
    with VirtualBoard(versions_registry, "v0001", boot_delay_s=0.05) as vb:
        result = upload_virtual(vb.url, image)
        assert result.duration_s > len(image) * 10 / 115200  # it went at the line rate
        assert _hello(vb.url).model_version == "v0003"
        assert vb.stats.overflow_rx == 0


def test_a_power_cut_at_every_flash_operation_of_an_upload_is_recovered_by_another(
        versions_registry: Path) -> None:
    root = versions_registry
    image = build_virtual_image(Registry(root), "v0003")
    with _board(root) as vb:
        upload_virtual(vb.url, image, baud=0)
        ops = vb.power.total_ops
    sectors = -(-len(image) // 4096)
    assert ops == 2 * sectors  # an erase per sector, a program per 4 KiB chunk
    outcomes: dict[str, int] = {}
    for k in range(1, ops + 1):
        with _board(root, faults=Faults(power_cut_at=k, power_cut_mode="torn")) as vb:
            with pytest.raises(UploadError, match="no reply within"):
                upload_virtual(vb.url, image, baud=0, timeout_s=0.5)
            assert vb.power.cuts == 1, k
            outcomes[vb.booted] = outcomes.get(vb.booted, 0) + 1
            if vb.booted == "bootloader":
                assert vb.bootloader_reason is not None
                assert vb.bootloader_reason.startswith("no valid application")
                _app_silent(vb.url)
            else:
                assert vb.booted == "built" and _hello(vb.url).model_version == "v0001"
            upload_virtual(vb.url, image, baud=0)
            info = _hello(vb.url)
            assert info.model_version == "v0003", k
            assert info.self_test is not None and info.self_test.status == 0
    # The state records the upload before its first erase: an erased region then means an
    # interrupted upload, so no cut leaves the board quietly on its built-in firmware.
    assert outcomes == {"bootloader": ops}


def test_a_confirmed_slot_model_keeps_running_after_a_full_image_upload(
        versions_registry: Path, variant: Any, tmp_path: Path) -> None:
    root = versions_registry
    run = CliRunner().invoke
    with _board(root, tmp_path / "s") as vb:
        r = run(cli, ["device", "load-model", "--device", vb.url, "--model", "v0003",
                      "--registry", str(root)])
        assert r.exit_code == 0, r.output
        assert run(cli, ["device", "confirm", "--device", vb.url]).exit_code == 0
        upload_virtual(vb.url, build_virtual_image(Registry(root), "v0002",
                                                   firmware_version="0.9.2"), baud=0)
        info = _hello(vb.url)
        assert info.firmware_version == "0.9.2"  # the new firmware runs ...
        assert info.model_version == "v0003" and info.model_sha256 == variant.sha256
        assert info.running == P.Running(P.RunningSource.SLOT_A, P.RunningMode.CONFIRMED)
        r = run(cli, ["device", "revert", "--device", vb.url])  # ... with the slot's model
        assert "the board runs factory (confirmed): v0002" in r.stdout, r.output


# --- refusals -------------------------------------------------------------------------------


def test_the_bootloader_refuses_bad_requests_and_ignores_the_app_protocol(
        versions_registry: Path) -> None:
    vb = VirtualBoard(versions_registry, "v0001", baud=0, boot_delay_s=0)
    assert vb.power_on_headless().startswith(b"tinyship ready")
    st, _, _, _ = _core.frame_decode(B.TOUCH[1:-1])
    assert st != _core.TS_OK  # the touch's body is never a frame
    assert vb.feed_headless(b"\x00\xfftinyship:boot") == b""  # half a touch: nothing
    assert vb.feed_headless(b"loader\x00") == banner("entered on the host's request")
    assert vb.booted == "bootloader"
    with pytest.raises(Exception, match="in its bootloader"):
        vb.running_model()
    reader = B.PacketReader()

    def ask(cmd: int, payload: bytes = b"", *, wire: bytes | None = None) -> B.Packet:
        [p] = reader.feed(vb.feed_headless(wire or B.encode(cmd, payload)))
        assert p.cmd == cmd | B.REPLY_FLAG and p.intact
        return p

    hello = ask(B.Cmd.HELLO)
    assert B.HELLO_REPLY.unpack_from(hello.payload) == (APP_REGION_BYTES, 4096, 4)
    assert hello.payload[B.HELLO_REPLY.size:] == B.BOOTLOADER_ID.encode()
    for app_request in (_core.frame_encode(0x02, 1, b""), b"info\n", B.TOUCH):
        assert vb.feed_headless(app_request) == b""  # no answer at all
    region = APP_REGION_BYTES
    for cmd, payload, status, reason in [
        (B.Cmd.ERASE, B.U32.pack(0), B.Status.OUT_OF_RANGE, "0 bytes"),
        (B.Cmd.ERASE, B.U32.pack(region + 1), B.Status.OUT_OF_RANGE, "the region has"),
        (B.Cmd.ERASE, b"\x01", B.Status.BAD_REQUEST, "payload of 1 bytes"),
        (B.Cmd.VERIFY, B.U32.pack(region + 1), B.Status.OUT_OF_RANGE, "the region has"),
        (B.Cmd.WRITE, B.U32.pack(2) + b"abcd", B.Status.OUT_OF_RANGE, "not on a 4-byte"),
        (B.Cmd.WRITE, B.U32.pack(region - 4) + bytes(8), B.Status.OUT_OF_RANGE, "inside"),
        (B.Cmd.WRITE, B.U32.pack(0), B.Status.BAD_REQUEST, "0 bytes of data"),
        (0x33, b"", B.Status.BAD_REQUEST, "unknown command 0x33"),
    ]:
        p = ask(cmd, payload)
        assert (p.status, reason in p.payload.decode()) == (status, True), (cmd, p)
    assert vb.power.total_ops == 0  # no refusal touched the flash
    assert ask(B.Cmd.WRITE, B.U32.pack(0) + b"abc").status == B.Status.OK  # padded to a unit
    p = ask(B.Cmd.WRITE, B.U32.pack(0) + b"abcd")
    assert p.status == B.Status.FLASH_FAILED and b"not erased" in p.payload
    damaged = bytearray(B.encode(B.Cmd.WRITE, B.U32.pack(8) + b"abcd"))
    damaged[-6] ^= 0x01  # in the payload: the header still checks out
    assert ask(B.Cmd.WRITE, wire=bytes(damaged)).status == B.Status.BAD_CRC
    p = ask(B.Cmd.VERIFY, B.U32.pack(4))
    assert p.payload == B.VERIFY_REPLY.pack(zlib.crc32(b"abc\xff"),
                                            hashlib.sha256(b"abc\xff").digest())
    p = ask(B.Cmd.BOOT)
    assert p.status == B.Status.NO_APPLICATION and b"not a virtual firmware image" in p.payload
    out = vb.power_cycle_headless()  # the ROM finds the same
    assert out.startswith(b"tinyship virtual bootloader: no valid application (not a virtual")
    assert vb.state.app is not None and vb.state.app["status"] == "invalid"


def test_damaged_images_are_refused_at_boot_and_a_readback_mismatch_at_verify(
        versions_registry: Path, tmp_path: Path) -> None:
    reg = Registry(versions_registry)
    image = build_virtual_image(reg, "v0003")
    with _board(versions_registry, tmp_path / "s") as vb:
        for how, why in (("crc", "CRC-32 mismatch"), ("sha", "SHA-256 mismatch")):
            with pytest.raises(UploadError, match=rf"boot: refused \(NO_APPLICATION\): no "
                                                  rf"valid application: {why}"):
                upload_virtual(vb.url, _damaged(image, how, reg), baud=0)
            assert vb.booted == "bootloader"
        _app_silent(vb.url)
        bad = next(i for i, b in enumerate(image) if b)

        def stuck_bit(step: str, done: int, total: int) -> None:
            if step == "verify":
                vb.app.nor._mem[bad] = 0  # the chip lost what was written
        with pytest.raises(UploadError, match=r"verify: read back CRC-32 [0-9a-f]{8}"):
            upload_virtual(vb.url, image, baud=0, progress=stuck_bit)
        upload_virtual(vb.url, image, baud=0)
        assert _hello(vb.url).model_version == "v0003"


def test_an_image_larger_than_the_region_is_refused_before_anything_is_erased(
        versions_registry: Path) -> None:
    with _board(versions_registry) as vb:
        with pytest.raises(UploadError, match=f"erase: the image is {APP_REGION_BYTES + 1} "
                                              f"bytes, the application region "
                                              f"{APP_REGION_BYTES}"):
            upload_virtual(vb.url, bytes(APP_REGION_BYTES + 1), baud=0)
        assert vb.power.total_ops == 0


def test_upload_to_a_port_with_nothing_listening_is_an_upload_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(UploadError, match=f"virtual upload to {url}: open: cannot open") as e:
        upload_virtual(url, b"image")
    assert e.value.exit_code == ExitCode.DEVICE


@pytest.mark.parametrize(("peer", "message"), [
    ("silent", r"sync: no answer from a virtual bootloader within 0.5 s of the touch"),
    ("hangs up", r"(touch|sync): the link dropped"),
])
def test_upload_to_a_port_without_a_bootloader_is_an_upload_error(peer: str,
                                                                   message: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"socket://127.0.0.1:{server.getsockname()[1]}"
        conns: list[socket.socket] = []

        def accept() -> None:
            conn, _ = server.accept()
            conns.append(conn)
            if peer == "hangs up":
                conn.close()
        t = threading.Thread(target=accept, daemon=True)
        t.start()
        try:
            with pytest.raises(UploadError, match=message):
                upload_virtual(url, b"image", timeout_s=0.5)
        finally:
            t.join(5)
            for c in conns:
                c.close()
