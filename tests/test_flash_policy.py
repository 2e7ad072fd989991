"""`tinyship flash` refusals and the full-image path through a real board's uploader.

Policy (nothing is sent to the board; exit 11; a `refused` row in the deployment log): a
tampered artifact, a missing or bad signature when a release key is configured, a second
flash of a board another process is flashing, a downgrade without the flag. The uploader
of a real board (esptool for esp32s3) is a fake executable on PATH (conftest.FakeTool, a
test double at the process boundary) driving a virtual board that therefore does not change:
a failing upload, and an upload that "succeeds" while the board keeps its old firmware,
both end rolled back with the board verified on its old model.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import FakeTool, store_image
from test_flash import SMOKE, board, context, flash, reads, row
from tinyship.deploy.flash import FlashOutcome
from tinyship.deploy.log import DeploymentLog
from tinyship.errors import ExitCode
from tinyship.signing import generate_keypair, sign_version


def _refused(o: FlashOutcome, word: str) -> None:
    assert o.result == "refused", o.message
    assert o.exit_code == ExitCode.POLICY
    assert word in (o.message or "")


def test_tampered_artifact_is_refused_before_anything_is_sent(versions_registry: Path,
                                                              tmp_path: Path) -> None:
    reg = versions_registry
    model = reg / "v0003" / "model_int8.tflite"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    ctx = context(reg)
    with board(reg, tmp_path / "s") as vb:
        o = flash(vb, ctx, "v0003")
        _refused(o, "model_int8.tflite: SHA-256 mismatch")
        assert vb.flash is not None and vb.flash.total_ops == 0  # not one erase
        assert reads(vb)[:2] == ("v0001", "factory (confirmed)")
    a = row(ctx, o.attempt_id)
    assert (a.result, a.failed_step, a.to_model) == ("refused", "policy", "v0003")


def test_unsigned_and_badly_signed_versions_are_refused(versions_registry: Path,
                                                        tmp_path: Path) -> None:
    reg = versions_registry
    _, pub, _ = generate_keypair(tmp_path / "keys")
    other, _, _ = generate_keypair(tmp_path / "other")
    ctx = context(reg, public_key=pub)
    from tinyship.registry import Registry

    with board(reg, tmp_path / "s") as vb:
        _refused(flash(vb, ctx, "v0003"), "unsigned")
        sign_version(Registry(reg), "v0003", other)  # the wrong key
        _refused(flash(vb, ctx, "v0003"), "v0003")
        assert reads(vb)[0] == "v0001"
        sign_version(Registry(reg), "v0003", tmp_path / "keys" / "release.key")
        assert flash(vb, ctx, "v0003").result == "ok"
        assert reads(vb)[:2] == ("v0003", "slot A (confirmed)")
    results = [a.result for a in DeploymentLog(ctx.log_path).list_attempts()]
    assert results == ["ok", "refused", "refused"]


def test_second_flash_of_a_busy_board_is_refused_naming_the_holder(
        versions_registry: Path, tmp_path: Path) -> None:
    reg = versions_registry
    ctx = context(reg)
    with board(reg, tmp_path / "s") as vb:
        # another terminal's flash: a process holding the board's port lock
        holder = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys
                from pathlib import Path
                from tinyship.deploy.lock import DeviceLock
                with DeviceLock(Path({str(ctx.lock_dir)!r}), port={vb.url!r},
                                command="tinyship flash v0002"):
                    print("held", flush=True)
                    sys.stdin.readline()
            """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            o = flash(vb, ctx, "v0003")
            _refused(o, f"pid {holder.pid}")
            assert "tinyship flash v0002" in (o.message or "")
        finally:
            assert holder.stdin is not None
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(10)
        assert reads(vb)[0] == "v0001"
        assert row(ctx, o.attempt_id).result == "refused"
        assert flash(vb, ctx, "v0003").result == "ok"  # free again


def test_downgrade_only_with_the_flag(versions_registry: Path, tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        assert flash(vb, ctx, "v0003").result == "ok"
        _refused(flash(vb, ctx, "v0002"), "older than the v0003 the board runs")
        assert reads(vb)[0] == "v0003"
        assert flash(vb, ctx, "v0002", allow_downgrade=True).result == "ok"
        assert reads(vb)[:2] == ("v0002", "slot B (confirmed)")


# --- a real board's uploader, faked on PATH ---------------------------------------------------


@pytest.fixture
def esp_images(versions_registry: Path) -> Path:
    for v in ("v0001", "v0003"):
        store_image(versions_registry, v, "esp32s3")
    return versions_registry


def test_failing_uploader_rolls_back_with_the_board_unchanged(
        esp_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTool(tmp_path, monkeypatch)
    fake.set(code=2, output="A fatal error occurred: Failed to connect to ESP32-S3")
    ctx = context(esp_images)
    with board(esp_images, tmp_path / "s") as vb:
        o = flash(vb, ctx, "v0003", env="esp32s3", path="image")
        assert (o.result, o.failed_step, o.exit_code) == ("rolled_back", "upload",
                                                          ExitCode.ROLLED_BACK), o.message
        assert "Failed to connect to ESP32-S3" in (o.message or "")
        assert o.rollback == "nothing to undo: the board still runs its previous image"
        assert reads(vb)[:2] == ("v0001", "factory (confirmed)")
    [call] = fake.calls()
    argv = call["argv"]
    assert isinstance(argv, list) and argv[argv.index("--port") + 1] == vb.url
    out = (esp_images / "builds" / "v0003" / "esp32s3").resolve()
    assert argv[-6:] == ["0x0", str(out / "bootloader.bin"), "0x8000",
                         str(out / "partitions.bin"), "0x10000", str(out / "firmware.bin")]
    a = row(ctx, o.attempt_id)
    assert (a.path, a.env, a.result, a.failed_step) == ("image", "esp32s3", "rolled_back",
                                                        "upload")


def test_upload_that_changes_nothing_is_caught_by_verification(
        esp_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTool(tmp_path, monkeypatch)  # exits 0 and writes nothing to the board
    ctx = context(esp_images)
    with board(esp_images, tmp_path / "s") as vb:
        o = flash(vb, ctx, "v0003", env="esp32s3", path="image", smoke_vectors=SMOKE)
        assert (o.result, o.failed_step) == ("rolled_back", "verify"), o.message
        assert "reports model v0001, expected v0003" in (o.message or "")
        assert reads(vb)[0] == "v0001"
    assert len(fake.calls()) == 1


def test_image_path_without_a_stored_image_is_refused(versions_registry: Path,
                                                      tmp_path: Path) -> None:
    ctx = context(versions_registry)
    with board(versions_registry, tmp_path / "s") as vb:
        o = flash(vb, ctx, "v0003", env="esp32s3", path="image")
        assert o.result == "refused" and o.exit_code == ExitCode.REGISTRY
        assert "tinyship build --env esp32s3 --model v0003" in str(o.error.hint if o.error
                                                                    else "")
        assert reads(vb)[0] == "v0001"


def test_a_stored_image_must_be_covered_by_the_signature(
        esp_images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinyship.registry import Registry

    fake = FakeTool(tmp_path, monkeypatch)
    key = tmp_path / "keys" / "release.key"
    _, pub, _ = generate_keypair(tmp_path / "keys")
    ctx = context(esp_images, public_key=pub)
    reg = Registry(esp_images)
    sign_version(reg, "v0001", key)
    # v0003 signed before its image was stored: the image is not covered
    image = esp_images / "builds" / "v0003"
    hidden = tmp_path / "later"
    image.rename(hidden)
    sign_version(reg, "v0003", key)
    hidden.rename(image)
    with board(esp_images, tmp_path / "s") as vb:
        _refused(flash(vb, ctx, "v0003", env="esp32s3", path="image"),
                 "no signature over its stored esp32s3 image")
        sign_version(reg, "v0003", key)  # now it is
        # a swapped image whose build.json was rewritten to match is caught
        fw = image / "esp32s3" / "firmware.bin"
        fw.write_bytes(b"EVIL FIRMWARE")
        info = json.loads((image / "esp32s3" / "build.json").read_text())
        info["artifacts"]["firmware.bin"] = hashlib.sha256(b"EVIL FIRMWARE").hexdigest()
        (image / "esp32s3" / "build.json").write_text(json.dumps(info))
        _refused(flash(vb, ctx, "v0003", env="esp32s3", path="image"),
                 "stored image of esp32s3 differs from the signed one")
    assert fake.calls() == []  # the uploader never ran
