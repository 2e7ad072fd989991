"""Signed releases: keys, `sign_version` / `verify_version` and the registry commands.

Every test works on a copy of the committed fixture registry (tests/fixtures/registry), never
on models/ (a build output, not in git).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli as _cli
from tinyship.config import load_config
from tinyship.errors import ConfigError, ExitCode, PolicyError, RegistryError
from tinyship.registry import Registry
from tinyship.signing import (
    SIGNATURE,
    SignatureError,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_version,
    signed_message,
    verify_version,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "registry"
V = "v0001"


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    root = tmp_path / "models"
    shutil.copytree(FIXTURE, root)
    r = Registry(root)
    assert r.verify(V) == []
    return r


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, str]:
    return generate_keypair(tmp_path / "keys")


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _ = _cli(capsys, *args, "--json")
    return code, json.loads(out)


# --- keys ---------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_can_read(
    keys: tuple[Path, Path, str]
) -> None:
    private, public, kid = keys
    assert (private.name, public.name) == ("release.key", "release.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()
    assert len(kid) == 16 and int(kid, 16) >= 0
    load_private_key(private)
    load_public_key(public)
    assert sorted(p.name for p in private.parent.iterdir()) == ["release.key", "release.pub"]


def test_keygen_refuses_to_overwrite_a_key(keys: tuple[Path, Path, str]) -> None:
    private, public, _ = keys
    before = private.read_bytes(), public.read_bytes()
    with pytest.raises(ConfigError, match="already exists: refusing to overwrite"):
        generate_keypair(private.parent)
    public.unlink()  # even with only the private half left, it stays untouched
    with pytest.raises(ConfigError, match=r"release\.key already exists"):
        generate_keypair(private.parent)
    assert private.read_bytes() == before[0]
    assert sorted(p.name for p in private.parent.iterdir()) == ["release.key"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_private_key_readable_by_others_is_refused(
    reg: Registry, keys: tuple[Path, Path, str]
) -> None:
    private, _, _ = keys
    private.chmod(0o644)
    with pytest.raises(ConfigError, match=r"accessible by others \(mode 0644\)") as e:
        sign_version(reg, V, private)
    assert e.value.hint == f"chmod 600 {private}"
    assert not (reg.root / V / SIGNATURE).exists()


def test_a_public_key_is_not_a_private_key(reg: Registry, keys: tuple[Path, Path, str]
                                           ) -> None:
    _, public, _ = keys
    public.chmod(0o600)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        sign_version(reg, V, public)
    with pytest.raises(ConfigError, match="not found"):
        load_public_key(public.parent / "nope.pub")


# --- sign and verify ----------------------------------------------------------------------


def test_sign_verify_round_trip(reg: Registry, keys: tuple[Path, Path, str]) -> None:
    private, public, kid = keys
    message = signed_message(reg, V)
    sig = sign_version(reg, V, private)
    assert (sig.version, sig.key_id, sig.path) == (V, kid, reg.root / V / SIGNATURE)
    doc = json.loads(sig.path.read_text())
    assert doc["format"] == "tinyship-release-signature/1" and doc["algorithm"] == "ed25519"
    assert doc["version"] == V and doc["key_id"] == kid
    # The signature file is not an artifact: the message and the registry's check ignore it.
    assert signed_message(reg, V) == message
    assert reg.verify(V) == []
    ok = verify_version(reg, V, public)
    assert (ok.version, ok.key_id, ok.signed_at) == (V, kid, doc["signed_at"])
    assert verify_version(reg, "latest", load_public_key(public)).version == V
    # Signing again (Ed25519 is deterministic) changes nothing that is signed.
    again = sign_version(reg, V, private)
    assert json.loads(again.path.read_text())["signature"] == doc["signature"]
    verify_version(reg, V, public)


def test_the_message_covers_the_manifest_bytes_and_every_artifact_hash(reg: Registry) -> None:
    doc = json.loads(signed_message(reg, V))
    assert set(doc) == {"format", "version", "manifest_sha256", "artifacts"}
    assert doc["artifacts"] == reg.artifacts(V)
    assert list(doc["artifacts"]) == sorted(doc["artifacts"])
    manifest = reg.root / V / "manifest.json"
    manifest.write_bytes(manifest.read_bytes() + b" ")  # whitespace only: still a change
    assert json.loads(signed_message(reg, V))["manifest_sha256"] != doc["manifest_sha256"]


def test_unsigned_version_is_refused(reg: Registry, keys: tuple[Path, Path, str]) -> None:
    _, public, kid = keys
    with pytest.raises(SignatureError, match=rf"^{V} is unsigned \(no signature\.json\) and "
                       rf"a public key \({kid}\) is configured$") as e:
        verify_version(reg, V, public)
    assert e.value.reason == "unsigned" and e.value.version == V
    assert isinstance(e.value, PolicyError) and e.value.exit_code == ExitCode.POLICY == 11
    assert e.value.hint is not None and "tinyship registry sign" in e.value.hint


def test_wrong_key_is_refused_and_named(
    reg: Registry, keys: tuple[Path, Path, str], tmp_path: Path
) -> None:
    private, _, kid = keys
    _, other_public, other_kid = generate_keypair(tmp_path / "other")
    sign_version(reg, V, private)
    with pytest.raises(SignatureError, match=rf"^{V} is signed by another key: {kid}, the "
                       rf"configured public key is {other_kid}$") as e:
        verify_version(reg, V, other_public)
    assert (e.value.reason, e.value.key_id, e.value.expected_key_id) == (
        "wrong_key", kid, other_kid)


def test_a_forged_key_id_does_not_pass(
    reg: Registry, keys: tuple[Path, Path, str], tmp_path: Path
) -> None:
    _, public, kid = keys
    other_private, _, _ = generate_keypair(tmp_path / "other")
    sig = sign_version(reg, V, other_private)
    doc = json.loads(sig.path.read_text())
    sig.path.write_text(json.dumps({**doc, "key_id": kid}))  # claims the configured key
    with pytest.raises(SignatureError, match=r"does not verify .*corrupt or forged") as e:
        verify_version(reg, V, public)
    assert e.value.reason == "corrupt"


def test_tampered_manifest_is_refused(reg: Registry, keys: tuple[Path, Path, str]) -> None:
    private, public, _ = keys
    sign_version(reg, V, private)
    manifest = reg.root / V / "manifest.json"
    m = json.loads(manifest.read_text())
    m["metrics"]["int8"]["mae"] = 0.001  # a better-looking model
    manifest.write_text(json.dumps(m, indent=2) + "\n")
    assert reg.verify(V) == []  # the artifacts still match: only the signature sees it
    with pytest.raises(SignatureError, match=rf"^{V} was changed after signing: "
                       r"manifest\.json differs from the signed one$") as e:
        verify_version(reg, V, public)
    assert e.value.reason == "changed"


def test_tampered_manifest_hash_and_artifact_are_refused(
    reg: Registry, keys: tuple[Path, Path, str]
) -> None:
    """An artifact swapped with its hash updated in the manifest, as an attacker would."""
    private, public, _ = keys
    sign_version(reg, V, private)
    manifest = reg.root / V / "manifest.json"
    m = json.loads(manifest.read_text())
    (reg.root / V / "MODEL_CARD.md").write_text("an innocent edit\n")
    import hashlib

    m["artifacts"]["MODEL_CARD.md"] = hashlib.sha256(b"an innocent edit\n").hexdigest()
    manifest.write_text(json.dumps(m, indent=2) + "\n")
    assert reg.verify(V) == []
    with pytest.raises(SignatureError, match="changed after signing") as e:
        verify_version(reg, V, public)
    assert e.value.reason == "changed"


def test_tampered_artifact_is_refused(reg: Registry, keys: tuple[Path, Path, str]) -> None:
    private, public, _ = keys
    sign_version(reg, V, private)
    model = reg.root / V / "model_int8.tflite"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(SignatureError, match=rf"^{V} was changed after signing: "
                       r"model_int8\.tflite: SHA-256 mismatch$") as e:
        verify_version(reg, V, public)
    assert e.value.reason == "changed"


def test_corrupt_manifest_after_signing_is_a_change(
    reg: Registry, keys: tuple[Path, Path, str]
) -> None:
    private, public, _ = keys
    sign_version(reg, V, private)
    (reg.root / V / "manifest.json").write_text("{")
    with pytest.raises(SignatureError, match=rf"^{V} was changed after signing: .*corrupt "
                       "manifest") as e:
        verify_version(reg, V, public)
    assert e.value.reason == "changed"


@pytest.mark.parametrize("content, why", [
    ("{", "Expecting"),
    ("[]", "not a JSON object"),
    ('{"key_id": "x"}', "missing 'signature'"),
    ("__VALID__", "format"),
    ("__BADB64__", "signature is not base64"),
], ids=["json", "array", "field", "format", "base64"])
def test_corrupt_signature_file_is_refused(
    reg: Registry, keys: tuple[Path, Path, str], content: str, why: str
) -> None:
    private, public, _ = keys
    sig = sign_version(reg, V, private)
    doc = json.loads(sig.path.read_text())
    if content == "__VALID__":
        content = json.dumps({**doc, "format": "something-else/9"})
    elif content == "__BADB64__":
        content = json.dumps({**doc, "signature": "not base64!"})
    sig.path.write_text(content)
    with pytest.raises(SignatureError, match=rf"^{V} has a corrupt signature\.json: .*({why})"
                       ) as e:
        verify_version(reg, V, public)
    assert e.value.reason == "corrupt"


def test_flipped_signature_bytes_are_refused(
    reg: Registry, keys: tuple[Path, Path, str]
) -> None:
    import base64

    private, public, _ = keys
    sig = sign_version(reg, V, private)
    doc = json.loads(sig.path.read_text())
    raw = bytearray(base64.b64decode(doc["signature"]))
    raw[0] ^= 1
    sig.path.write_text(json.dumps({**doc, "signature": base64.b64encode(raw).decode()}))
    with pytest.raises(SignatureError, match="does not verify") as e:
        verify_version(reg, V, public)
    assert e.value.reason == "corrupt"


def test_a_signature_moved_to_another_version_is_refused(
    reg: Registry, keys: tuple[Path, Path, str]
) -> None:
    private, public, _ = keys
    sign_version(reg, V, private)
    shutil.copytree(reg.root / V, reg.root / "v0002")
    with pytest.raises(SignatureError, match=r"^v0002 carries the signature of v0001"):
        verify_version(reg, "v0002", public)


def test_a_damaged_version_is_not_signed(reg: Registry, keys: tuple[Path, Path, str]) -> None:
    private, _, _ = keys
    (reg.root / V / "test_set.npz").write_bytes(b"")
    with pytest.raises(RegistryError, match=rf"{V} is damaged: test_set\.npz: SHA-256"):
        sign_version(reg, V, private)
    assert not (reg.root / V / SIGNATURE).exists()
    with pytest.raises(RegistryError, match="no version or alias 'v0042'"):
        sign_version(reg, "v0042", private)


# --- config -------------------------------------------------------------------------------


def test_public_key_in_config_resolves_against_its_folder(tmp_path: Path) -> None:
    text = (REPO / "tinyship.toml").read_text()
    cfg_path = tmp_path / "proj" / "tinyship.toml"
    cfg_path.parent.mkdir()
    cfg_path.write_text(text)
    assert load_config(cfg_path).public_key_path is None
    cfg_path.write_text(text + '\n[deploy]\npublic_key = "keys/release.pub"\n')
    assert load_config(cfg_path).public_key_path == cfg_path.parent / "keys" / "release.pub"
    cfg_path.write_text(text + '\n[deploy]\npublic_kee = "keys/release.pub"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'deploy\.public_kee'"):
        load_config(cfg_path)


# --- commands -----------------------------------------------------------------------------


def _project(tmp_path: Path, reg: Registry, public: Path | None) -> Path:
    """A tinyship.toml using `reg`, with `public` as deploy.public_key (relative)."""
    cfg = tmp_path / "tinyship.toml"
    text = (REPO / "tinyship.toml").read_text().replace(
        'registry = "models"', f'registry = "{reg.root.relative_to(tmp_path)}"')
    if public is not None:
        text += f'\n[deploy]\npublic_key = "{public.relative_to(tmp_path)}"\n'
    cfg.write_text(text)
    return cfg


def test_keygen_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _json(capsys, "registry", "keygen", "--out", str(tmp_path / "k"))
    assert code == 0 and doc["ok"] is True
    assert doc["private_key"] == str(tmp_path / "k" / "release.key")
    assert load_public_key(Path(doc["public_key"])) is not None and len(doc["key_id"]) == 16
    code, out, err = _cli(capsys, "registry", "keygen", "--out", str(tmp_path / "k"))
    assert code == 3 and "refusing to overwrite a key" in err and out == ""
    code, doc = _json(capsys, "registry", "keygen", "--out", str(tmp_path / "k"))
    assert code == 3 and doc["error"]["type"] == "ConfigError"
    code, out, _ = _cli(capsys, "registry", "keygen", "--out", str(tmp_path / "k"),
                        "--name", "next")
    assert code == 0 and "keep it off the rig" in out
    assert (tmp_path / "k" / "next.key").is_file()


def test_sign_command(
    tmp_path: Path, reg: Registry, keys: tuple[Path, Path, str],
    capsys: pytest.CaptureFixture[str]
) -> None:
    private, _, kid = keys
    code, out, _ = _cli(capsys, "registry", "sign", V, "--key", str(private),
                        "--registry", str(reg.root))
    assert code == 0 and out.startswith(f"{V}: signed by key {kid}")
    code, doc = _json(capsys, "registry", "sign", "latest", "--key", str(private),
                      "--registry", str(reg.root))
    assert code == 0 and doc["version"] == V and doc["key_id"] == kid
    assert doc["warning"] is None
    # Signed with a key other than the configured one: done, with a warning.
    _, other_public, other_kid = generate_keypair(tmp_path / "other")
    cfg = _project(tmp_path, reg, other_public)
    code, out, err = _cli(capsys, "registry", "sign", V, "--key", str(private),
                          "--config", str(cfg))
    assert code == 0 and f"is key {other_kid}: this project will refuse {V}" in err
    other_public.unlink()  # a configured key that is missing: signed all the same, warned
    code, doc = _json(capsys, "registry", "sign", V, "--key", str(private), "--config", str(cfg))
    assert code == 0 and "deploy.public_key cannot be used" in doc["warning"]
    # Refusals: unknown version (6), a key file others can read (3).
    code, doc = _json(capsys, "registry", "sign", "v0099", "--key", str(private),
                      "--registry", str(reg.root))
    assert code == 6 and doc["error"]["type"] == "RegistryError"
    private.chmod(0o640)
    code, out, err = _cli(capsys, "registry", "sign", V, "--key", str(private),
                          "--registry", str(reg.root))
    assert code == 3 and "accessible by others" in err and "Traceback" not in err


def test_verify_command_checks_signatures_when_a_key_is_configured(
    tmp_path: Path, reg: Registry, keys: tuple[Path, Path, str],
    capsys: pytest.CaptureFixture[str]
) -> None:
    private, public, kid = keys
    # No key configured: the report is what it always was.
    cfg = _project(tmp_path, reg, None)
    code, doc = _json(capsys, "registry", "verify", "--config", str(cfg))
    assert code == 0 and doc == {"ok": True, "versions": [
        {"version": V, "ok": True, "problems": []}]}
    # Configured: an unsigned version is refused, exit 11.
    cfg = _project(tmp_path, reg, public)
    code, out, err = _cli(capsys, "registry", "verify", "--config", str(cfg))
    assert code == 11
    assert out.startswith(f"{V}: all artifacts match their manifest hashes; REFUSED (unsigned)")
    assert "1 of 1 version(s) refused by the signing policy" in err
    code, doc = _json(capsys, "registry", "verify", V, "--config", str(cfg))
    assert code == 11 and doc["ok"] is False
    assert doc["error"]["type"] == "PolicyError" and doc["error"]["exit_code"] == 11
    [row] = doc["versions"]
    assert row["ok"] is False and row["problems"] == []
    assert row["signature"]["reason"] == "unsigned" and row["signature"]["ok"] is False
    # Signed: passes, naming the key.
    sign_version(reg, V, private)
    code, out, _ = _cli(capsys, "registry", "verify", "--config", str(cfg))
    assert code == 0 and out.strip() == (
        f"{V}: all artifacts match their manifest hashes; signed by {kid}")
    code, doc = _json(capsys, "registry", "verify", "--config", str(cfg))
    assert code == 0 and doc["versions"][0]["signature"] == {
        "ok": True, "key_id": kid, "reason": None, "message": None}
    # --public-key overrides the config: another key refuses it.
    _, other_public, other_kid = generate_keypair(tmp_path / "other")
    code, doc = _json(capsys, "registry", "verify", "--config", str(cfg),
                      "--public-key", str(other_public))
    assert code == 11 and doc["versions"][0]["signature"]["reason"] == "wrong_key"
    assert doc["versions"][0]["signature"]["key_id"] == kid
    assert other_kid in doc["versions"][0]["signature"]["message"]
    # A damaged artifact: exit 6 (damage wins over the policy), both reported.
    (reg.root / V / "model_int8.tflite").write_bytes(b"x")
    code, doc = _json(capsys, "registry", "verify", "--config", str(cfg))
    assert code == 6 and doc["error"]["type"] == "RegistryError"
    assert doc["versions"][0]["signature"]["reason"] == "changed"
    # A configured key file that is missing is a config error.
    (tmp_path / "keys" / "release.pub").unlink()
    code, out, err = _cli(capsys, "registry", "verify", "--config", str(cfg))
    assert code == 3 and "public key" in err and "not found" in err


def test_importing_signing_is_cheap() -> None:
    """cryptography loads only when a key is used; nothing heavy comes with the module."""
    import subprocess
    import sys

    code = ("import sys, tinyship.signing\n"
            "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'cryptography', 'tensorflow', 'numpy', 'pandas'})))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO / "host")})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_readme_documents_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(line.split("|")[1]) for line in table.splitlines()
                  if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert documented == {int(c) for c in ExitCode}
    assert "| 11 | refused by policy" in table


def test_keygen_without_hard_links_still_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FAT-formatted USB stick has no hard links: keys are created exclusively instead."""
    def no_links(src: object, dst: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    private, public, _ = generate_keypair(tmp_path / "usb")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    load_private_key(private)
    load_public_key(public)
    assert sorted(p.name for p in private.parent.iterdir()) == ["release.key", "release.pub"]
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        generate_keypair(tmp_path / "usb")
