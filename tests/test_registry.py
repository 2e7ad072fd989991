"""The registry: atomic versions, aliases, verification, and clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_cli as _cli
from tinyship.config import Config
from tinyship.errors import RegistryError
from tinyship.registry import MANIFEST, Registry

REPO = Path(__file__).resolve().parents[1]


def _add(reg: Registry, payload: str = "x") -> str:
    with reg.stage() as st:
        (st.dir / "model_int8.tflite").write_text(payload)
        st.manifest = {"model": {"bytes": len(payload)}}
    assert st.version is not None
    return st.version


def test_versions_are_numbered_with_parent_and_hashes(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v1, v2 = _add(reg, "one"), _add(reg, "two")
    assert (v1, v2) == ("v0001", "v0002")
    assert reg.versions() == ["v0001", "v0002"]
    m = reg.manifest("v0002")
    assert m["version"] == "v0002" and m["parent"] == "v0001"
    assert set(m["artifacts"]) == {"model_int8.tflite"}
    assert reg.verify("v0002") == []


def test_failed_stage_leaves_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    _add(reg)
    with pytest.raises(RuntimeError), reg.stage() as st:
        (st.dir / "half.bin").write_text("partial")
        raise RuntimeError("training crashed")
    assert reg.versions() == ["v0001"]
    leftovers = [p.name for p in reg.root.iterdir() if p.name not in ("v0001", ".lock")]
    assert leftovers == []


def test_incomplete_folder_without_manifest_is_ignored(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    (reg.root / "v0007").mkdir(parents=True)
    assert reg.versions() == []
    assert _add(reg) == "v0001"


def test_resolve_default_alias_latest_and_errors(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    with pytest.raises(RegistryError, match="has no versions"):
        reg.resolve()
    _add(reg)
    _add(reg)
    assert reg.resolve() == "v0002"  # no production alias: newest
    reg.promote("v0001")
    assert reg.resolve() == "v0001"
    assert reg.resolve("latest") == "v0002"
    with pytest.raises(RegistryError, match="no version or alias 'v0099'"):
        reg.resolve("v0099")


def test_promote_keeps_last_known_good(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    _add(reg)
    _add(reg)
    reg.promote("v0001")
    aliases = reg.promote("v0002")
    assert aliases == {"production": "v0002", "last_known_good": "v0001"}
    on_disk = json.loads((reg.root / "aliases.json").read_text())
    assert on_disk == aliases


def test_invalid_alias_names_rejected(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    _add(reg)
    for bad in ("v0001", "latest", "Bad Name", ""):
        with pytest.raises(RegistryError, match="invalid alias"):
            reg.set_alias(bad, "v0001")


def test_verify_detects_tampering(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v = _add(reg, "original")
    (reg.root / v / "model_int8.tflite").write_text("tampered")
    assert reg.verify(v) == ["model_int8.tflite: SHA-256 mismatch"]


def test_corrupt_aliases_file_named(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    _add(reg)
    (reg.root / "aliases.json").write_text("{not json")
    with pytest.raises(RegistryError, match=r"aliases\.json: corrupt aliases file"):
        reg.resolve()


# --- robustness: unwritable folders, broken manifests, damaged artifacts ----------------


def test_check_writable_changes_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "a" / "models")
    reg.check_writable()  # a missing folder below a writable one is fine, and not created
    assert not (tmp_path / "a").exists()
    _add(reg)
    before = sorted(p.name for p in reg.root.iterdir())
    reg.check_writable()
    assert sorted(p.name for p in reg.root.iterdir()) == before


def test_registry_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    # A path below a regular file cannot be created, not even by root (unlike chmod 0o555).
    (tmp_path / "not_a_dir").write_text("x")
    reg = Registry(tmp_path / "not_a_dir" / "models")
    with pytest.raises(RegistryError, match=r"not_a_dir/models is not writable: Not a dir") as e:
        reg.check_writable()
    assert e.value.hint is not None and "--registry" in e.value.hint
    with pytest.raises(RegistryError, match="not writable"), reg.stage():
        pass


def test_unopenable_lock_file_is_a_registry_error(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    _add(reg)
    (reg.root / ".lock").unlink()
    (reg.root / ".lock").mkdir()  # opening it for append fails, for root too
    with pytest.raises(RegistryError, match="not writable: Is a directory"):
        reg.check_writable()
    with pytest.raises(RegistryError, match="not writable: Is a directory"):
        reg.promote("v0001")
    with pytest.raises(RegistryError, match="not writable: Is a directory"), reg.stage():
        pass
    assert reg.versions() == ["v0001"] and reg.aliases() == {}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o555 folder anyway")
def test_read_only_registry_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    _add(reg)
    before = sorted(p.name for p in reg.root.iterdir())
    reg.root.chmod(0o555)
    try:
        with pytest.raises(RegistryError, match="not writable: Permission denied"):
            reg.check_writable()
        with pytest.raises(RegistryError, match="not writable"), reg.stage():
            pass
        with pytest.raises(RegistryError, match="not writable"):
            reg.promote("v0001")
        assert sorted(p.name for p in reg.root.iterdir()) == before
    finally:
        reg.root.chmod(0o755)


@pytest.mark.parametrize(("content", "reason"), [
    (b"{not json", "corrupt manifest: Expecting property name"),
    (b"[1, 2]", "corrupt manifest: expected a JSON object, got list"),
    (b'{"version": "\xff"}', "corrupt manifest: 'utf-8' codec can't decode"),
])
def test_bad_manifest_is_a_registry_error(tmp_path: Path, content: bytes, reason: str) -> None:
    reg = Registry(tmp_path / "models")
    v = _add(reg)
    (reg.root / v / "manifest.json").write_bytes(content)
    with pytest.raises(RegistryError, match=rf"v0001/manifest\.json: {reason}"):
        reg.manifest(v)
    [problem] = reg.verify(v)  # reported, not raised, so `verify` can go on to other versions
    assert re.match(rf"manifest\.json: {reason}", problem)


def test_read_artifact_checks_the_manifest_hash(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v = _add(reg, "model bytes")
    assert reg.read_artifact(v, "model_int8.tflite") == b"model bytes"
    f = reg.root / v / "model_int8.tflite"
    f.write_text("model by")  # truncated
    with pytest.raises(RegistryError, match=r"^v0001/model_int8\.tflite is damaged: SHA-256 "
                       r"mismatch \(expected [0-9a-f]{64}, got [0-9a-f]{64}\)$") as e:
        reg.read_artifact(v, "model_int8.tflite")
    assert e.value.hint is not None and "tinyship registry verify" in e.value.hint
    f.unlink()
    with pytest.raises(RegistryError, match=r"v0001/model_int8\.tflite is missing"):
        reg.read_artifact(v, "model_int8.tflite")
    (reg.root / v / "extra.bin").write_text("x")
    with pytest.raises(RegistryError, match=r"v0001/extra\.bin is not listed"):
        reg.read_artifact(v, "extra.bin")
    manifest = json.loads((reg.root / v / "manifest.json").read_text())
    manifest["artifacts"] = ["model_int8.tflite"]
    (reg.root / v / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RegistryError, match="'artifacts' must map"):
        reg.read_artifact(v, "model_int8.tflite")


def _three_versions_oldest_damaged(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "models")
    for payload in ("one", "two", "three"):
        _add(reg, payload)
    (reg.root / "v0001" / "model_int8.tflite").write_text("on")
    return reg


def test_verify_all_checks_every_version(tmp_path: Path) -> None:
    reg = _three_versions_oldest_damaged(tmp_path)
    (reg.root / "v0002" / "manifest.json").write_text("{")
    results = reg.verify_all()
    assert list(results) == ["v0001", "v0002", "v0003"]
    assert results["v0001"] == ["model_int8.tflite: SHA-256 mismatch"]
    assert [p[:40] for p in results["v0002"]] == ["manifest.json: corrupt manifest: Expecti"]
    assert results["v0003"] == []


def test_verify_command_checks_all_versions_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = _three_versions_oldest_damaged(tmp_path)
    code, out, err = _cli(capsys, "registry", "verify", "--registry", str(reg.root))
    assert code == 6
    assert out.splitlines() == [
        "v0001: DAMAGED: model_int8.tflite: SHA-256 mismatch",
        "v0002: all artifacts match their manifest hashes",
        "v0003: all artifacts match their manifest hashes",
    ]
    assert "1 of 3 version(s) damaged" in err and "v0001" in err and "Traceback" not in err

    code, out, err = _cli(capsys, "registry", "verify", "--registry", str(reg.root), "--json")
    assert code == 6 and "1 of 3 version(s) damaged" in err
    doc = json.loads(out)  # one document: the report, with the error
    assert doc["ok"] is False and doc["error"]["exit_code"] == 6
    assert doc["versions"] == [
        {"version": "v0001", "ok": False, "problems": ["model_int8.tflite: SHA-256 mismatch"]},
        {"version": "v0002", "ok": True, "problems": []},
        {"version": "v0003", "ok": True, "problems": []},
    ]

    code, out, _ = _cli(capsys, "registry", "verify", "v0003", "--registry", str(reg.root),
                        "--json")
    assert code == 0
    assert json.loads(out) == {"ok": True, "versions": [
        {"version": "v0003", "ok": True, "problems": []}]}


def test_list_shows_healthy_versions_and_marks_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = Registry(tmp_path / "models")
    _add(reg)
    _add(reg)
    (reg.root / "v0002" / "manifest.json").write_text("[]")
    code, out, err = _cli(capsys, "registry", "list", "--registry", str(reg.root), "--json")
    assert code == 0
    rows = json.loads(out)["versions"]
    assert [(r["version"], r["broken"]) for r in rows] == [
        ("v0001", None), ("v0002", "corrupt manifest: expected a JSON object, got list")]
    assert rows[0]["model_bytes"] == 1
    assert "warning: 1 broken version(s)" in err and "v0002" in err

    code, out, err = _cli(capsys, "registry", "list", "--registry", str(reg.root))
    assert code == 0 and "BROKEN: corrupt" in out and "v0001" in out
    assert "v0002" in err

    code, out, err = _cli(capsys, "registry", "show", "v0002", "--registry", str(reg.root))
    assert code == 6
    assert "v0002/manifest.json: corrupt manifest" in err and "Traceback" not in err


# --- damaged artifacts of a real trained version, through the commands that load them ---


@pytest.fixture
def damaged_copy(
    registry_copy: Callable[[], tuple[Path, str]],
) -> Callable[[str], tuple[Path, str]]:
    """A copy of the trained registry with one artifact truncated to half its size."""

    def make(relpath: str) -> tuple[Path, str]:
        root, version = registry_copy()
        f = root / version / relpath
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        return root, version

    return make


def test_emulator_refuses_a_truncated_model(
    damaged_copy: Callable[[str], tuple[Path, str]], tmp_path: Path
) -> None:
    root, version = damaged_copy("model_int8.tflite")
    proc = subprocess.run(
        [sys.executable, "-m", "tinyship", "emulator", "--registry", str(root), "--model",
         version], capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 6, proc.stderr
    assert f"{version}/model_int8.tflite is damaged: SHA-256 mismatch" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("relpath", ["model_int8.tflite", "test_set.npz"])
def test_hil_refuses_a_damaged_artifact(
    damaged_copy: Callable[[str], tuple[Path, str]], relpath: str,
    capsys: pytest.CaptureFixture[str]
) -> None:
    root, version = damaged_copy(relpath)
    code, _, err = _cli(capsys, "hil", "--device", "virtual", "--registry", str(root),
                        "--model", version, "--baud", "0", "--limit", "5")
    assert code == 6, err
    assert f"{version}/{relpath} is damaged: SHA-256 mismatch" in err


def test_firmware_build_refuses_a_damaged_version(
    damaged_copy: Callable[[str], tuple[Path, str]], tmp_path: Path
) -> None:
    from tinyship.firmware.build import build

    root, version = damaged_copy("firmware/tinyship_model_data.cc")
    (tmp_path / "platformio.ini").write_text(  # an env whose library pin passes its check
        "[env:mbed]\nplatform = platformio/nordicnrf52 @ 10.4.0\nboard = nano33ble\n"
        "custom_tinyship_profile = tflm-arduino-2023\nlib_deps =\n"
        "    https://github.com/spaziochirale/Chirale_TensorFlowLite.git"
        "#46da2f989205a9216229d38cd3d1c657d79d6781\n")
    with pytest.raises(RegistryError, match=r"damaged: firmware/tinyship_model_data\.cc"):
        build(tmp_path, Registry(root), "mbed", version, pio=[str(tmp_path / "no-pio")])


def test_select_model_copies_only_files_matching_the_manifest(
    registry_copy: Callable[[], tuple[Path, str]], tmp_path: Path
) -> None:
    """The PlatformIO pre-build script (no tinyship import) checks hashes itself."""
    spec = importlib.util.spec_from_file_location(
        "tinyship_select_model", REPO / "firmware/scripts/select_model.py")
    assert spec and spec.loader
    sm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sm)
    root, version = registry_copy()

    def prepare() -> object:
        return sm.prepare_build(project_dir=REPO, build_dir=tmp_path / "build",
                                env_name="esp32s3", env_profile="tflm-current",
                                environ={"TINYSHIP_REGISTRY": str(root),
                                         "TINYSHIP_MODEL": version})

    prepare()  # intact: the manifest's keys are the paths the script copies
    data_cc = root / version / "firmware/tinyship_model_data.cc"
    data_cc.write_text(data_cc.read_text() + "/* edited by hand */\n")
    with pytest.raises(sm.SelectModelError,
                       match=rf"{version}/firmware/tinyship_model_data\.cc is damaged"):
        prepare()
    manifest_path = root / version / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    del manifest["artifacts"]["firmware/tinyship_model_data.cc"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(sm.SelectModelError, match=r"tinyship_model_data\.cc is not listed"):
        prepare()


def test_damaged_version_cannot_become_an_alias(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    v1, v2 = _add(reg, "one"), _add(reg, "two")
    reg.promote(v1)
    (reg.root / v2 / "model_int8.tflite").write_text("tampered")
    with pytest.raises(RegistryError, match=r"v0002 is damaged: model_int8\.tflite"):
        reg.promote(v2)
    with pytest.raises(RegistryError, match="v0002 is damaged"):
        reg.set_alias("candidate", v2)
    (reg.root / v2 / MANIFEST).write_text("{bad")
    with pytest.raises(RegistryError, match="v0002 is damaged"):
        reg.promote(v2)
    assert reg.aliases() == {"production": v1}


def test_failed_training_leaves_no_registry_folder(tmp_path: Path) -> None:
    """The write-access check runs before the data checks and must not create anything."""
    from conftest import small_config
    from tinyship.errors import DataError
    from tinyship.pipeline import run_pipeline

    cfg = small_config(tmp_path, tmp_path / "missing.csv",
                       project={"registry": str(tmp_path / "reg" / "models")})
    with pytest.raises(DataError, match=r"missing\.csv"):
        run_pipeline(cfg)
    assert not (tmp_path / "reg").exists()


def test_duplicate_detection_skips_a_damaged_twin(
    trained_registry: tuple[Config, str], registry_copy: Callable[[], tuple[Path, str]]
) -> None:
    from tinyship.pipeline import find_identical

    _, version = trained_registry
    root, _ = registry_copy()
    key = Registry(root).manifest(version)["training_key"]
    assert find_identical(Registry(root), key) == version
    (root / version / "test_set.npz").write_bytes(b"damaged")
    assert find_identical(Registry(root), key) is None
