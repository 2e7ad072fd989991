"""Flashing a stored firmware image: verification, the uploader command lines, failures.

No board and no PlatformIO tool packages here, so the uploaders (bossac, rp2040load,
esptool.py) are a fake executable on PATH: a test double at the process boundary that
records its argv and cwd into a JSON file and exits with a configurable code after printing
configurable output. The 1200-baud touch gets an injected port lister and opener (no real
serial port). Stored images are files plus a build.json written into a tmp registry's
builds/ folder, as `tinyship build` leaves them.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import FakeTool, store_image
from tinyship.deploy.image import (
    UploaderMissing,
    UploadError,
    plan_upload,
    run_upload,
    stored_image,
    touch_1200bps,
)
from tinyship.errors import DeviceError, ExitCode, RegistryError
from tinyship.firmware.build import build
from tinyship.registry import Registry

VERSION = "v0007"


def store(root: Path, env: str, names: tuple[str, ...] | None = None) -> Path:
    return store_image(root, VERSION, env, names)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTool]:
    yield FakeTool(tmp_path, monkeypatch)


def no_touch(port: str, **_: object) -> str:
    return port


def test_nano33ble_bossac_command_after_touch(tmp_path: Path, fake: FakeTool) -> None:
    out = store(tmp_path / "reg", "nano33ble")
    image = stored_image(tmp_path / "reg", VERSION, "nano33ble")
    plan = plan_upload("nano33ble", image, "/dev/ttyACM0")
    touched: list[tuple[str, object]] = []

    def touch(port: str, **kw: object) -> str:
        touched.append((port, kw["wait_for_new_port"]))
        return "/dev/ttyACM1"

    lines: list[str] = []
    result = run_upload(plan, touch=touch, on_line=lines.append)
    assert touched == [("/dev/ttyACM0", True)]
    [call] = fake.calls()
    fw = str((out / "firmware.bin").resolve())
    assert call["argv"] == ["--port", "ttyACM1", "--write", "--erase", "--verify", "-U",
                            "--reset", fw]
    assert call["cwd"] == str(out.resolve())
    assert result.exit_code == 0 and result.port == "/dev/ttyACM1"
    assert lines == ["ok"]
    assert plan.files == {fw: image.artifacts["firmware.bin"]}


def test_rp2040_rp2040load_command(tmp_path: Path, fake: FakeTool) -> None:
    out = store(tmp_path / "reg", "nanorp2040connect")
    plan = plan_upload("nanorp2040connect",
                       stored_image(tmp_path / "reg", VERSION, "nanorp2040connect"),
                       "/dev/ttyACM0")
    assert plan.touch_1200 and not plan.wait_for_new_port
    run_upload(plan, touch=no_touch)
    [call] = fake.calls()
    assert call["argv"] == ["-v", "-D", str((out / "firmware.elf").resolve())]


def test_esp32s3_esptool_command(tmp_path: Path, fake: FakeTool) -> None:
    out = store(tmp_path / "reg", "esp32s3").resolve()
    plan = plan_upload("esp32-s3-devkitc-1", stored_image(tmp_path / "reg", VERSION, "esp32s3"),
                       "/dev/ttyUSB0")
    assert not plan.touch_1200
    assert plan.executable[0] == sys.executable  # a .py runs behind Python, as PlatformIO does
    run_upload(plan, touch=no_touch)
    [call] = fake.calls()
    assert call["argv"] == [
        "--chip", "esp32s3", "--port", "/dev/ttyUSB0", "--baud", "460800",
        "--before", "default_reset", "--after", "hard_reset", "write_flash", "-z",
        "--flash_mode", "dio", "--flash_freq", "80m", "--flash_size", "8MB",
        "0x0", str(out / "bootloader.bin"), "0x8000", str(out / "partitions.bin"),
        "0x10000", str(out / "firmware.bin")]


def test_esp32s3_image_without_bootloader_refused(tmp_path: Path, fake: FakeTool) -> None:
    store(tmp_path / "reg", "esp32s3", ("firmware.bin", "firmware.elf"))
    image = stored_image(tmp_path / "reg", VERSION, "esp32s3")
    with pytest.raises(RegistryError, match=r"no bootloader\.bin") as e:
        plan_upload("esp32s3", image, "/dev/ttyUSB0")
    assert e.value.hint is not None and "tinyship build --env esp32s3" in e.value.hint
    assert fake.calls() == []


@pytest.mark.parametrize("damage", ["tamper", "delete"])
def test_tampered_or_missing_file_refused_before_the_tool(
    tmp_path: Path, fake: FakeTool, damage: str
) -> None:
    out = store(tmp_path / "reg", "nano33ble")
    if damage == "tamper":
        (out / "firmware.bin").write_bytes(b"evil")
    else:
        (out / "firmware.bin").unlink()
    with pytest.raises(RegistryError, match=r"firmware\.bin") as e:
        stored_image(tmp_path / "reg", VERSION, "nano33ble")
    assert e.value.exit_code == ExitCode.REGISTRY
    assert fake.calls() == []


def test_file_changed_after_planning_refused(tmp_path: Path, fake: FakeTool) -> None:
    out = store(tmp_path / "reg", "nanorp2040connect")
    plan = plan_upload("nanorp2040connect",
                       stored_image(tmp_path / "reg", VERSION, "nanorp2040connect"), "p")
    (out / "firmware.elf").write_bytes(b"swapped")
    touched: list[str] = []
    with pytest.raises(RegistryError, match=r"firmware\.elf"):
        run_upload(plan, touch=lambda p, **_: touched.append(p) or p)
    assert fake.calls() == [] and touched == []


def test_no_stored_image_names_the_build_command(tmp_path: Path) -> None:
    (tmp_path / "reg").mkdir()
    with pytest.raises(RegistryError, match="no stored image") as e:
        stored_image(tmp_path / "reg", VERSION, "esp32s3")
    assert e.value.hint is not None and "tinyship build --env esp32s3" in e.value.hint


def test_missing_tool_named_with_its_package(tmp_path: Path, fake: FakeTool) -> None:
    (fake.bin / "bossac").unlink()
    store(tmp_path / "reg", "nano33ble")
    image = stored_image(tmp_path / "reg", VERSION, "nano33ble")
    with pytest.raises(UploaderMissing, match="bossac is not installed") as e:
        plan_upload("nano33ble", image, "/dev/ttyACM0")
    assert e.value.hint is not None and "tool-bossac" in e.value.hint
    assert e.value.exit_code == ExitCode.DEVICE


def test_tool_paths_override_path(tmp_path: Path, fake: FakeTool,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    store(tmp_path / "reg", "nanorp2040connect")
    image = stored_image(tmp_path / "reg", VERSION, "nanorp2040connect")
    plan = plan_upload("nanorp2040connect", image, "p",
                       tool_paths={"rp2040load": fake.bin / "rp2040load"})
    assert plan.executable == (str(fake.bin / "rp2040load"),)
    run_upload(plan, touch=no_touch)
    assert len(fake.calls()) == 1
    with pytest.raises(UploaderMissing, match="tool_paths"):
        plan_upload("nanorp2040connect", image, "p",
                    tool_paths={"rp2040load": tmp_path / "nope"})


def test_failing_tool_raises_upload_error_with_tail(tmp_path: Path, fake: FakeTool) -> None:
    store(tmp_path / "reg", "esp32s3")
    plan = plan_upload("esp32s3", stored_image(tmp_path / "reg", VERSION, "esp32s3"), "P")
    fake.set(code=1, output="Connecting....\nA fatal error occurred: Failed to connect")
    with pytest.raises(UploadError) as e:
        run_upload(plan)
    assert isinstance(e.value, DeviceError) and e.value.exit_code == ExitCode.DEVICE
    assert e.value.tool_exit_code == 1
    assert "exit 1" in str(e.value) and "Failed to connect" in str(e.value)
    assert e.value.tail[-1] == "A fatal error occurred: Failed to connect"


def test_touch_waits_for_the_new_port() -> None:
    snapshots = iter([["/dev/ttyACM0"], [], [], ["/dev/ttyACM1"]])
    opened: list[tuple[str, int]] = []
    port = touch_1200bps("/dev/ttyACM0", list_ports=lambda: next(snapshots),
                         open_port=lambda p, b: opened.append((p, b)), sleep=lambda s: None)
    assert opened == [("/dev/ttyACM0", 1200)]
    assert port == "/dev/ttyACM1"


def test_touch_port_that_comes_back_under_its_name() -> None:
    snapshots = iter([["/dev/ttyACM0"], [], ["/dev/ttyACM0"]])
    assert touch_1200bps("/dev/ttyACM0", list_ports=lambda: next(snapshots),
                         open_port=lambda p, b: None, sleep=lambda s: None) == "/dev/ttyACM0"


def test_touch_no_port_left_times_out() -> None:
    snapshots = iter([["/dev/ttyACM0"]] + [[]] * 100)
    with pytest.raises(DeviceError, match="no bootloader port appeared"):
        touch_1200bps("/dev/ttyACM0", timeout_s=1.0, list_ports=lambda: next(snapshots),
                      open_port=lambda p, b: None, sleep=lambda s: None)


def test_build_stores_esp32_bootloader_and_partitions(
    registry_copy: object, tmp_path: Path
) -> None:
    """`tinyship build` keeps bootloader.bin and partitions.bin (the fake pio writes them
    where platform-espressif32 does) and records them in build.json."""
    root, version = registry_copy()  # type: ignore[operator]
    proj = tmp_path / "proj"
    (proj / "firmware/src").mkdir(parents=True)
    (proj / "firmware/src/idf_component.yml").write_text(
        'dependencies:\n  espressif/esp-tflite-micro: "==1.3.4"\n')
    (proj / "platformio.ini").write_text(
        "[platformio]\nsrc_dir = firmware/src\n\n[env:esp32s3]\n"
        "platform = platformio/espressif32 @ 6.9.0\nboard = esp32-s3-devkitc-1\n"
        "framework = arduino, espidf\ncustom_tinyship_profile = tflm-current\n")
    pio = tmp_path / "fake_pio.py"
    pio.write_text(f"""#!{sys.executable}
import pathlib, sys
args = sys.argv[1:]
out = pathlib.Path(args[args.index("-d") + 1]) / ".pio" / "build" / args[args.index("-e") + 1]
out.mkdir(parents=True, exist_ok=True)
for n in ("firmware.bin", "firmware.elf", "bootloader.bin", "partitions.bin"):
    (out / n).write_bytes(n.encode())
""")
    pio.chmod(pio.stat().st_mode | stat.S_IEXEC)
    build(proj, Registry(root), "esp32s3", version, pio=[str(pio)])
    image = stored_image(root, version, "esp32s3")
    assert {"bootloader.bin", "partitions.bin", "firmware.bin"} <= set(image.artifacts)
