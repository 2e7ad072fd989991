"""The registry: atomic versions, aliases, verification, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyship.errors import RegistryError
from tinyship.registry import Registry


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
