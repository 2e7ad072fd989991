"""Model slots on the real boards (issue 11): the build-time checks of
`firmware/scripts/select_model.py` (slot size per env, the board's flash, the embedded model
fitting a slot, the op resolver of every model family, the arena), the shipped
`platformio.ini` / partition table, the flash HALs against stub vendor headers and fakes
(`make flash-hal`, `make flash-hal-arm`), and `main.cpp` with slots on the host: a slot
image installed, booted as a trial and confirmed through the glue, the runner and the core.

Toolchain tests skip with a reason when a tool is missing; TINYSHIP_REQUIRE_ARM=1 turns the
Cortex-M skip into a failure.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import typing
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from test_firmware import GOLDEN_IN, IN_SIZE, OUT_SIZE, _stub_model, _write_version

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
INI = REPO / "platformio.ini"
PARTITIONS = FIRMWARE / "esp32s3/partitions.csv"
FIXTURE_REGISTRY = REPO / "tests" / "fixtures" / "registry"


@pytest.fixture()
def sm() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "tinyship_select_model_slots", FIRMWARE / "scripts/select_model.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None or shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("make or a host C++ compiler is not installed")
    return subprocess.run(["make", "-C", str(FIRMWARE), *args], capture_output=True, text=True,
                          timeout=600, check=False, env=env)


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _envs() -> dict[str, dict[str, str]]:
    """Each `[env:NAME]` of platformio.ini over the common `[env]` section."""
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(INI)
    common = dict(ini["env"]) if ini.has_section("env") else {}
    return {s[4:]: {**common, **dict(ini[s])} for s in ini.sections() if s.startswith("env:")}


# ------------------------------------------------------------------ op resolver --


def test_op_tables_are_the_host_tables(sm: ModuleType) -> None:
    """The script cannot import tinyship: its copies of the resolver-method and op-id
    tables and of the profiles' exclusions must equal the host's."""
    from tinyship.convert.carray import RESOLVER_METHODS
    from tinyship.device.slot_image import OP_IDS
    from tinyship.profiles import PROFILES

    assert dict(sm.RESOLVER_METHODS) == RESOLVER_METHODS
    assert set(sm.OP_IDS) == set(RESOLVER_METHODS)
    assert {op: OP_IDS[op] for op in sm.OP_IDS} == dict(sm.OP_IDS)
    assert set(sm.PROFILE_EXCLUDED_OPS) == set(PROFILES)
    for name, profile in PROFILES.items():
        assert set(RESOLVER_METHODS) - profile.supported_ops == sm.PROFILE_EXCLUDED_OPS[name]
    assert "MEAN" in sm.PROFILE_EXCLUDED_OPS["tflm-arduino-2023"]


def test_family_ops_cover_the_families_tinyship_trains(sm: ModuleType) -> None:
    """FAMILY_OPS was measured for these families and activations: a new one must be
    measured too (the slow test below) and added."""
    from tinyship.config import ModelSection
    from tinyship.profiles import PROFILES

    fields = ModelSection.model_fields
    assert set(typing.get_args(fields["type"].annotation)) == {"mlp", "conv1d"}
    assert set(typing.get_args(fields["activation"].annotation)) == {"relu", "relu6", "tanh"}
    assert len(set(sm.FAMILY_OPS)) == len(sm.FAMILY_OPS)
    for profile in PROFILES.values():
        assert set(sm.FAMILY_OPS) <= profile.supported_ops, profile.name
    assert set(sm.FAMILY_OPS) <= set(sm.RESOLVER_METHODS)


@pytest.mark.slow
def test_family_ops_hold_every_converted_family(sm: ModuleType) -> None:
    """Convert an (untrained) model of every family, activation and task as the pipeline
    does: each one's operators must be registered by the default op resolver."""
    pytest.importorskip("tensorflow")
    import numpy as np

    from tinyship.config import ModelSection
    from tinyship.convert.quantize import to_int8_tflite
    from tinyship.convert.tflite_info import inspect_model
    from tinyship.train.model import build_model

    rep = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    for kind in ("mlp", "conv1d"):
        for act in ("relu", "relu6", "tanh"):
            for task, outputs in (("regression", 1), ("classification", 3)):
                model = build_model(6, outputs, task,
                                    ModelSection(type=kind, activation=act, hidden=[8]))
                ops = inspect_model(to_int8_tflite(model, rep, "tflm-arduino-2023")).ops
                assert set(ops) <= set(sm.FAMILY_OPS), (kind, act, task, ops)


def test_resolver_ops_default_explicit_and_refused(sm: ModuleType, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-arduino-2023")
    model = sm.load_model(reg, "v0001")
    assert model.ops is None  # a hand-written manifest: read from its ops header
    header = reg / "v0001/firmware/tinyship_model_ops.h"
    embedded = sm.model_ops(model, header)
    assert embedded == ("FULLY_CONNECTED", "RELU")
    ops = sm.resolver_ops("nano33ble", "tflm-arduino-2023", None, model, embedded)
    assert ops[:2] == embedded and set(ops) == set(embedded) | set(sm.FAMILY_OPS)
    assert sm.resolver_ops("x", "tflm-arduino-2023", "families", model, embedded) == ops
    assert sm.resolver_ops("x", "tflm-arduino-2023", "relu6, conv_2d", model, embedded) == (
        "FULLY_CONNECTED", "RELU", "RELU6", "CONV_2D")
    assert sm.resolver_ops("x", "tflm-current", "families MEAN", model, embedded)[-1] == "MEAN"
    with pytest.raises(sm.SelectModelError, match=r"env 'nano33ble'.*MEAN.*tflm-arduino-2023"):
        sm.resolver_ops("nano33ble", "tflm-arduino-2023", "families,MEAN", model, embedded)
    with pytest.raises(sm.SelectModelError, match=r"custom_tinyship_ops names 'GELU'"):
        sm.resolver_ops("x", "tflm-current", "GELU", model, embedded)
    with pytest.raises(sm.SelectModelError, match=r"v0001 uses MEAN"):
        sm.resolver_ops("x", "tflm-arduino-2023", None, model, ("MEAN",))
    header.write_text(header.read_text().replace("AddRelu", "AddGelu"))
    with pytest.raises(sm.SelectModelError, match=r"resolver\.AddGelu"):
        sm.model_ops(model, header)


def test_runner_config_lists_ids_and_registrations(sm: ModuleType, tmp_path: Path) -> None:
    from tinyship.device.slot_image import OP_IDS

    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current")
    model = sm.load_model(reg, "v0001")
    ops = ("FULLY_CONNECTED", "SOFTMAX", "CONV_2D")
    text = sm.render_runner_config(env_name="esp32s3", model=model, ops=ops, option=None,
                                   arena=4096)
    assert "#define TINYSHIP_RESOLVER_OP_COUNT 3\n" in text
    ids = re.search(r"#define TINYSHIP_RESOLVER_OP_IDS \{(.*)\}", text)
    assert ids and [int(v.rstrip("u")) for v in ids.group(1).split(", ")] == [
        OP_IDS[o] for o in ops]
    assert "#define TINYSHIP_RUNNER_ARENA_BYTES 4096\n" in text
    assert text.index("AddFullyConnected()) != 0) return 1;") < text.index(
        "AddConv2D()) != 0) return 3;")
    assert sm.arena_bytes("x", model, None) == 2048
    assert sm.arena_bytes("x", model, 5000) == 5008  # a multiple of 16
    with pytest.raises(sm.SelectModelError, match="custom_tinyship_arena_bytes"):
        sm.arena_bytes("x", model, 0)


# ------------------------------------------------------------------ slot checks --


def test_slot_image_size_agrees_with_the_host_codec(sm: ModuleType, tmp_path: Path) -> None:
    """The script sizes the embedded model's slot image from the core's headers; the host
    codec (which builds the image an installer sends) must agree, golden-vector cap included."""
    from tinyship.device import slot_image as si

    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current")
    model = sm.load_model(reg, "v0001")
    fw = reg / "v0001/firmware"
    for ops in (("FULLY_CONNECTED",), ("FULLY_CONNECTED", "RELU", "SOFTMAX")):
        header, body = sm.slot_image_bytes(REPO, model, ops, fw / "tinyship_model_data.h",
                                           fw / "tinyship_model_data.cc")
        n = min(len(GOLDEN_IN), si.max_golden_for(len(ops), IN_SIZE, OUT_SIZE))
        assert header == si.header_len_for(len(ops), n, IN_SIZE, OUT_SIZE)
        assert body == 96
    # Many golden vectors: only those that fit one SLOT_BEGIN payload go into the image.
    data_h = fw / "tinyship_model_data.h"
    data_h.write_text(re.sub(r"#define TINYSHIP_GOLDEN_COUNT \d+", "#define TINYSHIP_GOLDEN_COUNT"
                             " 500", data_h.read_text()))
    header, _ = sm.slot_image_bytes(REPO, model, ("FULLY_CONNECTED",), data_h,
                                    fw / "tinyship_model_data.cc")
    n = si.max_golden_for(1, IN_SIZE, OUT_SIZE)
    assert n < 500 and header == si.header_len_for(1, n, IN_SIZE, OUT_SIZE) <= 1024


def test_slot_checks_refuse_what_a_board_cannot_hold(sm: ModuleType, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-arduino-2023")
    model = sm.load_model(reg, "v0001")
    image = (160, 96)

    def check(board: str, slot: int | None, parts: Path | None = None,
              img: tuple[int, int] | None = image) -> int:
        return int(sm.check_slots(env_name="e", board=board, slot_bytes=slot, model=model,
                                  image=img, partitions=parts))

    assert check("nano33ble", None) == 0 and check("uno", 0) == 0  # no slots: nothing to hold
    assert check("nano33ble", 131072) == 131072
    assert check("nanorp2040connect", 8192) == 8192
    with pytest.raises(sm.SelectModelError, match=r"board 'uno' has no flash HAL"):
        check("uno", 8192)
    for bad in (4096, 10000, 6144):
        with pytest.raises(sm.SelectModelError, match=r"multiple of the board's 4096-byte"):
            check("nano33ble", bad)
    with pytest.raises(sm.SelectModelError, match=r"do not fit the sketch region"):
        check("nano33ble", 0x78000)  # 2 x 480 KiB = the whole region, no room for the model
    with pytest.raises(sm.SelectModelError, match=r"upload\.maximum_size"):
        check("nanorp2040connect", 1024 * 1024)
    # The embedded model must fit one slot (the last sector is the trailer).
    with pytest.raises(sm.SelectModelError) as err:
        check("nano33ble", 8192, img=(1024, 4000))
    message = str(err.value)
    assert "v0001 does not fit a model slot" in message and "5024 bytes" in message
    assert "holds 4096" in message
    least = int(re.search(r"at least (\d+)", message).group(1))  # type: ignore[union-attr]
    assert check("nano33ble", least, img=(1024, 4000)) == least
    assert check("nano33ble", least - 4096 if least > 8192 else 8192, img=(1024, 3000)) > 0

    # ESP32-S3: the partition table.
    assert check("esp32-s3-devkitc-1", 262144, PARTITIONS) == 262144
    with pytest.raises(sm.SelectModelError, match=r"needs board_build\.partitions"):
        check("esp32-s3-devkitc-1", 262144, None)
    with pytest.raises(sm.SelectModelError, match=r"do not fit partition 'tsslots'"):
        check("esp32-s3-devkitc-1", 0x41000, PARTITIONS)
    csv = tmp_path / "p.csv"
    csv.write_text("nvs, data, nvs, , 0x6000,\nfactory, app, factory, , 1M,\n")
    with pytest.raises(sm.SelectModelError, match=r"has no 'tsslots' partition"):
        check("esp32-s3-devkitc-1", 8192, csv)
    csv.write_text("tsslots, data, 0x40, 0x110000, 0x10000,\n")
    with pytest.raises(sm.SelectModelError, match=r"must have type 0x40"):
        check("esp32-s3-devkitc-1", 8192, csv)
    csv.write_text("factory, app, factory, , 1M,\ntsslots, 0x40, 0, , 7M,\n")
    with pytest.raises(sm.SelectModelError, match=r"'tsslots' ends at 0x810000, beyond"):
        check("esp32-s3-devkitc-1", 8192, csv)
    csv.write_text("factory, app, factory, , 1M,\ntsslots, 0x40, 0, , 64K,\n")
    assert [p.offset for p in sm.read_partitions(csv)] == [0x10000, 0x110000]
    assert check("esp32-s3-devkitc-1", 32768, csv) == 32768


def test_env_options_parse_sizes_and_lists(sm: ModuleType) -> None:
    opts = sm.env_options("e", {"board": "nano33ble", "custom_tinyship_slot_bytes": "128K",
                                "custom_tinyship_ops": ["families", "MEAN"],
                                "custom_tinyship_arena_bytes": "0x8000",
                                "board_build.partitions": "firmware/esp32s3/partitions.csv"},
                          REPO)
    assert opts == sm.EnvOptions("nano33ble", 131072, "families,MEAN", 32768, PARTITIONS)
    assert sm.env_options("e", {}, REPO) == sm.EnvOptions()
    with pytest.raises(sm.SelectModelError, match=r"custom_tinyship_slot_bytes = 'lots'"):
        sm.env_options("e", {"custom_tinyship_slot_bytes": "lots"}, REPO)


def test_shipped_envs_hold_two_slots_and_the_bundled_model(sm: ModuleType,
                                                           tmp_path: Path) -> None:
    """platformio.ini as shipped: every board env has slots, its flash holds them and the
    bundled model (a copy in tests/fixtures/registry) fits one; the generated headers say
    so."""
    envs = _envs()
    assert {"nano33ble", "nanorp2040connect", "esp32s3"} <= set(envs)
    for name, raw in envs.items():
        opts = sm.env_options(name, raw, REPO)
        assert opts.slot_bytes and opts.slot_bytes % 4096 == 0, name
        assert opts.board in sm.SLOT_BOARDS, name
        sel = sm.prepare_build(project_dir=REPO, build_dir=tmp_path / name, env_name=name,
                               env_profile=raw["custom_tinyship_profile"],
                               environ={"TINYSHIP_REGISTRY": str(FIXTURE_REGISTRY)},
                               options=opts)
        assert sel.slot_bytes == opts.slot_bytes
        slots = sel.slots_config.read_text()
        assert f"#define TINYSHIP_SLOT_BYTES {opts.slot_bytes}\n" in slots
        runner = sel.runner_config.read_text()
        assert set(sm.FAMILY_OPS) <= set(sel.ops)
        assert "#define TINYSHIP_RUNNER_ARENA_BYTES 32768\n" in runner
        if raw["custom_tinyship_profile"] == "tflm-arduino-2023":
            assert "MEAN" not in sel.ops
    assert envs["esp32s3"]["board_build.partitions"] == "firmware/esp32s3/partitions.csv"
    sdk = (FIRMWARE / "esp32s3/sdkconfig.defaults").read_text()
    assert "CONFIG_ESPTOOLPY_FLASHSIZE_8MB=y" in sdk  # the table needs more than 2 MiB


def test_prepare_build_refuses_slots_before_writing(sm: ModuleType, tmp_path: Path) -> None:
    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-arduino-2023")
    build = tmp_path / "build"
    with pytest.raises(sm.SelectModelError, match=r"env 'nano33ble'.*sketch region"):
        sm.prepare_build(project_dir=REPO, build_dir=build, env_name="nano33ble",
                         env_profile="tflm-arduino-2023", environ={"TINYSHIP_REGISTRY": str(reg)},
                         options=sm.EnvOptions(board="nano33ble", slot_bytes=0x80000))
    assert not (build / sm.GENERATED_DIR).exists()
    # Without options: no slots, the default op resolver, the model's arena.
    sel = sm.prepare_build(project_dir=REPO, build_dir=build, env_name="nano33ble",
                           env_profile="tflm-arduino-2023",
                           environ={"TINYSHIP_REGISTRY": str(reg)})
    assert sel.slot_bytes == 0
    assert "#define TINYSHIP_SLOT_BYTES 0\n" in sel.slots_config.read_text()
    assert "#define TINYSHIP_RUNNER_ARENA_BYTES 2048\n" in sel.runner_config.read_text()


def test_the_platformio_entry_point_reads_the_slot_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_tflm_libraries import ESP_PLATFORM, _FakeSConsEnv, _run_pre_build_script

    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current")
    monkeypatch.setenv("TINYSHIP_REGISTRY", str(reg))
    monkeypatch.delenv("TINYSHIP_MODEL", raising=False)
    src = tmp_path / "src"
    src.mkdir()
    (src / "idf_component.yml").write_text(
        'dependencies:\n  espressif/esp-tflite-micro: "==1.3.4"\n')
    options = {"env": "esp32s3", "platform": ESP_PLATFORM, "board": "esp32-s3-devkitc-1",
               "framework": ["arduino", "espidf"], "custom_tinyship_profile": "tflm-current",
               "board_build.partitions": "firmware/esp32s3/partitions.csv",
               "custom_tinyship_slot_bytes": "262144", "custom_tinyship_ops": "families"}
    build = tmp_path / "build"
    env = _FakeSConsEnv(options, {"PROJECT_DIR": REPO, "BUILD_DIR": build, "PROJECT_SRC_DIR": src})
    _run_pre_build_script(env)
    out = capsys.readouterr()
    assert env.exit_code is None, out.err
    assert "model slots: 2 x 262144 bytes" in out.out
    assert "#define TINYSHIP_SLOT_BYTES 262144\n" in (
        build / "tinyship_generated/tinyship_slots_config.h").read_text()
    env = _FakeSConsEnv({**options, "custom_tinyship_slot_bytes": "1M"},
                        {"PROJECT_DIR": REPO, "BUILD_DIR": tmp_path / "b2", "PROJECT_SRC_DIR": src})
    _run_pre_build_script(env)
    assert env.exit_code == 1
    assert "do not fit partition 'tsslots'" in capsys.readouterr().err


# ------------------------------------------------------------------ flash HALs --


def test_flash_hals_keep_the_flash_contract_against_stubs_and_fakes() -> None:
    out = _ok(_make("flash-hal"))
    for board, cases in (("nrf52", ("ok", "init-fails", "geometry")), ("rp2040", ("ok",)),
                         ("esp32", ("ok", "missing", "small", "encrypted", "mmap-fails"))):
        for case in cases:
            assert f"{board} flash HAL ({case}): ok" in out, out
    assert "FAIL" not in out
    assert "scenario missing: no partition tsslots" in out


def test_mbed_flash_hals_compile_for_cortex_m() -> None:
    if shutil.which("arm-none-eabi-g++") is None:
        if os.environ.get("TINYSHIP_REQUIRE_ARM") == "1":
            pytest.fail("TINYSHIP_REQUIRE_ARM=1 but arm-none-eabi-g++ is not installed")
        pytest.skip("arm-none-eabi-g++ not installed (apt-get install gcc-arm-none-eabi)")
    out = _ok(_make("flash-hal-arm"))
    # The slot region: 2 x 16 KiB of 0xFF (the test config), 4 KiB aligned, read-only data.
    regions = re.findall(r"\.rodata\.tinyship_slots\s+(\w+)\s+\w+\s+\w+\s+\w+\s+2\*\*(\d+)", out)
    assert regions == [("00008000", "12"), ("00008000", "12")], out
    assert "READONLY" in out
    sizes = {name: int(text) for text, name in re.findall(
        r"^\s*(\d+)\s+\d+\s+\d+\s+\d+\s+\w+\s+\S*/(hal_m4/flash_nrf52|hal_m0plus/flash_rp2040)\.o$",
        out, re.MULTILINE)}
    assert len(sizes) == 2 and all(0 < v < 2048 for v in sizes.values()), out


# ------------------------------------------------------- main.cpp with slots --


def _slot_image(version: str, profile: str, *, ops: tuple[str, ...] = ("FULLY_CONNECTED",),
                golden_ok: bool = True) -> bytes:
    """A slot image of a model the glue's stub interpreter runs (out[k] = sum(in) + k)."""
    from tinyship.device.slot_image import build_slot_image

    model = bytes(range(256)) * 2 + b"tinyship"
    gin = [bytes(v & 0xFF for v in row) for row in GOLDEN_IN]
    gout = [bytes((v + (0 if golden_ok else 1)) & 0xFF for v in _stub_model(row))
            for row in GOLDEN_IN]
    manifest: dict[str, Any] = {"version": version, "profile": profile, "model": {
        "sha256": hashlib.sha256(model).hexdigest(), "crc32": zlib.crc32(model),
        "bytes": len(model), "ops": list(ops), "arena_bytes": 1024,
        "input": {"shape": [1, IN_SIZE], "dtype": "int8", "scale": 0.5, "zero_point": -1},
        "output": {"shape": [1, OUT_SIZE], "dtype": "int8", "scale": 0.25, "zero_point": 2}}}
    return build_slot_image(model, manifest, 1, golden_inputs=gin, golden_outputs=gout)


def _glue_with_slots(sm: ModuleType, tmp_path: Path, image: bytes | None) -> dict[str, str]:
    reg = tmp_path / "models"
    _write_version(reg, "v0001", "tflm-current")
    sel = sm.prepare_build(project_dir=REPO, build_dir=tmp_path / "build", env_name="esp32s3",
                           env_profile="tflm-current", environ={"TINYSHIP_REGISTRY": str(reg)})
    env = dict(os.environ)
    env.pop("TINYSHIP_GLUE_SLOT_IMAGE", None)
    if image is not None:
        path = tmp_path / "slot.img"
        path.write_bytes(image)
        env["TINYSHIP_GLUE_SLOT_IMAGE"] = str(path)
    out = _ok(_make("glue", f"GLUE_GEN={sel.generated_dir}",
                    "GLUE_DEFS=-DTINYSHIP_GLUE_FAKE_BOARD", env=env))
    return dict(line.split(" ", 1) for line in out.splitlines()
                if re.match(r"(BANNER|HELLO|INFER|SLOTS|SLOTINFO|INSTALL|BOOT\d|RUN\d|CONFIRM|"
                            r"FAKE) ", line))


def test_glue_with_slots_boots_the_factory_model_through_the_runner(
    sm: ModuleType, tmp_path: Path
) -> None:
    from tinyship.device.slot_image import OP_IDS

    lines = _glue_with_slots(sm, tmp_path, None)
    assert lines["BANNER"].startswith("tinyship ready proto=2 fw=0.1.0 model=v0001 ")
    assert lines["BANNER"].endswith("selftest=pass")
    assert lines["INFER"] == "cmd=83 out=" + ",".join(map(str, _stub_model([1, 2, 3, 4])))
    # Factory, confirmed; the fake board's id; 4 sectors per slot, one is the trailer.
    assert lines["SLOTS"] == ("running=0/0 device_id=deadbeef01020304 capacity=12288 "
                              "model=v0001 selftest=0")
    ids = [OP_IDS[o] for o in ("FULLY_CONNECTED", "RELU", *[
        o for o in sm.FAMILY_OPS if o not in ("FULLY_CONNECTED", "RELU")])]
    assert lines["SLOTINFO"] == f"ops={','.join(map(str, ids))} a=5 b=5"  # both empty
    assert lines["FAKE"] == "nor_violations=0 resets=0 loads=1"  # the core loaded the factory


def test_glue_with_slots_installs_boots_a_trial_and_confirms(sm: ModuleType,
                                                             tmp_path: Path) -> None:
    lines = _glue_with_slots(sm, tmp_path, _slot_image("v0042", "tflm-current"))
    assert lines["INSTALL"] == "begin=91:0 writes=1/1 end=93:0"  # slot A
    assert lines["BOOT1"] == (
        "tinyship ready proto=2 fw=0.1.0 model=v0042 board=esp32s3 selftest=pass")
    assert lines["RUN1"].startswith("running=1/1 ") and "model=v0042 selftest=0" in lines["RUN1"]
    assert lines["CONFIRM"] == "95:1"
    assert lines["RUN2"].startswith("running=1/0 ") and "model=v0042" in lines["RUN2"]
    # Each boot loaded one model in place from the slot: factory, trial, confirmed.
    assert lines["FAKE"] == "nor_violations=0 resets=2 loads=3"


def test_glue_with_slots_reverts_a_trial_that_fails_its_self_test(sm: ModuleType,
                                                                 tmp_path: Path) -> None:
    lines = _glue_with_slots(sm, tmp_path, _slot_image("v0042", "tflm-current", golden_ok=False))
    assert lines["INSTALL"] == "begin=91:0 writes=1/1 end=93:0"
    # The trial's self-test fails: the runner reloads the factory model, confirmed.
    assert lines["RUN1"].startswith("running=0/0 ") and "model=v0001 selftest=0" in lines["RUN1"]
    assert lines["FAKE"].startswith("nor_violations=0 ")


@pytest.mark.parametrize(("profile", "ops", "code"), [
    ("tflm-arduino-2023", ("FULLY_CONNECTED",), 18),  # TS_ERR_SLOT_PROFILE
    ("tflm-current", ("FULLY_CONNECTED", "MEAN"), 19),  # TS_ERR_SLOT_OP: MEAN not registered
])
def test_glue_with_slots_refuses_what_the_firmware_cannot_run(
    sm: ModuleType, tmp_path: Path, profile: str, ops: tuple[str, ...], code: int
) -> None:
    """main.cpp hands the core the firmware's profile and registered operators."""
    lines = _glue_with_slots(sm, tmp_path, _slot_image("v0042", profile, ops=ops))
    assert lines["INSTALL"].startswith(f"begin=ff:{code} ")
    assert lines["RUN1"].startswith("running=0/0 ") and "model=v0001" in lines["RUN1"]


def test_the_virtual_board_registers_the_operators_a_board_build_does(sm: ModuleType) -> None:
    """One default op list: select_model.py's FAMILY_OPS (measured there) and the host's."""
    from tinyship.device import slot_image
    from tinyship.device.virtual.board import firmware_ops

    assert slot_image.FAMILY_OPS == sm.FAMILY_OPS
    assert {k: v for k, v in slot_image.OP_IDS.items() if k in sm.OP_IDS} == dict(sm.OP_IDS)
    ids = firmware_ops("tflm-arduino-2023", ["FULLY_CONNECTED", "MEAN"])
    assert ids == sorted(slot_image.OP_IDS[n] for n in sm.FAMILY_OPS)  # MEAN excluded
    assert slot_image.OP_IDS["MEAN"] in firmware_ops("tflm-current", ["MEAN"])


def test_the_virtual_board_sizes_its_arena_as_the_board_envs_do() -> None:
    import configparser

    from tinyship.device.virtual.board import SLOT_ARENA_BYTES

    ini = configparser.ConfigParser(interpolation=None)
    ini.read(INI)
    assert int(ini["env"]["custom_tinyship_arena_bytes"]) == SLOT_ARENA_BYTES
