"""Signed releases: an Ed25519 signature over a registry version's manifest and artifact hashes.

Keys (`generate_keypair`, `tinyship registry keygen`): the private key is a PKCS#8 PEM file
written with permissions 0600 and never overwritten; the public key a SubjectPublicKeyInfo
PEM file. Only the public key goes on a rig (`[deploy] public_key` in tinyship.toml); the
private key stays on the release machine.

A signature is `signature.json` in the version folder (`SIGNATURE`), written atomically. It
is not an artifact: the manifest, written when the version was stored, does not list it, so
adding or replacing it changes neither what is signed nor `Registry.verify`. The signed
message (`signed_message`) is the canonical JSON (sorted keys, no spaces, ASCII) of

    {"format": "tinyship-release-signature/1", "version": "v0001",
     "manifest_sha256": SHA-256 of manifest.json's bytes as stored,
     "artifacts": {path: SHA-256, ...}  (the manifest's map)}

plus, when the version has stored full images at signing time, `"builds": {env: SHA-256 of
builds/<version>/<env>/build.json}` (build.json lists each image file's SHA-256, so the
images are covered; an image built after signing is refused until the version is signed
again). So a changed byte of the manifest, a changed artifact hash or image, or a
signature moved to another version fails it; the artifacts themselves are checked against
those hashes by the registry (`Registry.verify`). Ed25519 is deterministic: signing again
with the same key gives the same file but for `signed_at`.

cryptography is imported only when a key is used, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tinyship.atomic import create_bytes_exclusive, write_bytes_atomic
from tinyship.errors import ConfigError, PolicyError, RegistryError
from tinyship.registry import DAMAGED_HINT, MANIFEST, Registry

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

#: The signature file in a version folder.
SIGNATURE = "signature.json"
#: What `signature.json`'s `format` says and the signed message starts with.
FORMAT = "tinyship-release-signature/1"
ALGORITHM = "ed25519"
#: File names `generate_keypair` writes in its folder by default.
DEFAULT_KEY_NAME = "release"
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"

Reason = Literal["unsigned", "corrupt", "wrong_key", "changed"]

SIGN_HINT = "sign it on the release machine: `tinyship registry sign VERSION --key PATH`"


class SignatureError(PolicyError):
    """A version refused by the signing policy (exit 11): `reason` says why.

    unsigned: no signature file; corrupt: the file is unreadable or its signature does not
    verify; wrong_key: signed by another key (`key_id` names it, `expected_key_id` the
    configured one); changed: the manifest or an artifact changed after signing.
    """

    def __init__(
        self,
        message: str,
        *,
        version: str,
        reason: Reason,
        key_id: str | None = None,
        expected_key_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.version = version
        self.reason: Reason = reason
        self.key_id = key_id
        self.expected_key_id = expected_key_id

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "reason": self.reason, "key_id": self.key_id,
                "expected_key_id": self.expected_key_id, "message": str(self)}


@dataclass(frozen=True)
class Signature:
    """A verified (or just written) signature of a version."""

    version: str
    key_id: str
    signed_at: str | None
    path: Path

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


# --- keys --------------------------------------------------------------------------------
def key_id(public_key: Ed25519PublicKey) -> str:
    """A key's fingerprint: the first 16 hex digits of SHA-256 over its 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: Path, name: str = DEFAULT_KEY_NAME) -> tuple[Path, Path, str]:
    """A new Ed25519 key pair as `out_dir/NAME.key` (private, 0600) and `NAME.pub`;
    returns (private path, public path, key id). Refuses (ConfigError) when either exists."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out_dir = Path(out_dir)
    private_path = out_dir / f"{name}{PRIVATE_SUFFIX}"
    public_path = out_dir / f"{name}{PUBLIC_SUFFIX}"
    for p in (private_path, public_path):
        if p.exists():
            raise ConfigError(f"{p} already exists: refusing to overwrite a key",
                              hint="choose another --out folder or --name; a replaced "
                              "private key cannot be recovered")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        create_bytes_exclusive(private_path, private_pem, mode=0o600)
        try:
            create_bytes_exclusive(public_path, public_pem, mode=0o644)
        except BaseException:
            private_path.unlink()  # ours, written a moment ago: no half pair left behind
            raise
    except FileExistsError as e:
        raise ConfigError(f"{e.filename or out_dir} already exists: refusing to overwrite a "
                          "key") from None
    except OSError as e:
        raise ConfigError(f"cannot write keys to {out_dir}: {e.strerror or e}") from None
    return private_path, public_path, key_id(key.public_key())


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found",
                          hint="create a pair with `tinyship registry keygen --out DIR`"
                          ) from None
    except OSError as e:
        raise ConfigError(f"{what} {path} is unreadable: {e.strerror or e}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file; ConfigError when it is missing, not an
    Ed25519 key, or readable by group or others (POSIX), as ssh refuses such a key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _read_key_file(path, "private key")
    if os.name == "posix":
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise ConfigError(f"private key {path} is accessible by others (mode "
                              f"{mode:04o})", hint=f"chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"private key {path} is not an unencrypted PEM private key: {e}"
                          ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"private key {path} is not an Ed25519 key "
                          f"({type(key).__name__})")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in a PEM file; ConfigError when missing or of another kind."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"public key {path} is not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"public key {path} is not an Ed25519 key ({type(key).__name__})")
    return key


def public_key_from_config(config_path: Path | None = None) -> Path | None:
    """`deploy.public_key` of the project config, resolved: the explicit config, else
    ./tinyship.toml when present (the rule `project_context` uses); None when unset."""
    from tinyship.config import project_config

    cfg = project_config(config_path)
    return None if cfg is None else cfg.public_key_path


# --- signing -----------------------------------------------------------------------------
def signed_message(registry: Registry, ref: str, builds: Sequence[str] = ()) -> bytes:
    """The bytes a signature of version `ref` covers (see the module docstring), with
    the SHA-256 of the `build.json` of each stored full image in `builds` (env names):
    `build.json` lists its files' SHA-256s, so the images are covered too."""
    version = registry.resolve(ref)
    manifest_path = registry.root / version / MANIFEST
    artifacts = registry.artifacts(version)  # RegistryError if the manifest is unusable
    try:
        manifest_sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    except OSError as e:
        raise RegistryError(f"{manifest_path}: unreadable: {e.strerror or e}",
                            hint=DAMAGED_HINT) from None
    doc: dict[str, Any] = {"format": FORMAT, "version": version,
                           "manifest_sha256": manifest_sha,
                           "artifacts": dict(sorted(artifacts.items()))}
    if builds:
        doc["builds"] = {env: _build_sha256(registry, version, env) for env in sorted(builds)}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def stored_builds(registry: Registry, version: str) -> list[str]:
    """Envs with a stored full image of `version` (`builds/<version>/<env>/build.json`)."""
    folder = registry.root / "builds" / version
    return sorted(p.parent.name for p in folder.glob("*/build.json")) if folder.is_dir() \
        else []


def _build_sha256(registry: Registry, version: str, env: str) -> str:
    path = registry.root / "builds" / version / env / "build.json"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise RegistryError(f"{path}: unreadable: {e.strerror or e}",
                            hint=DAMAGED_HINT) from None


def _manifest_sha256(message: bytes) -> str:
    return str(json.loads(message)["manifest_sha256"])


def sign_version(registry: Registry, ref: str, private_key_path: Path) -> Signature:
    """Sign version `ref` with the key in `private_key_path`: writes (or replaces)
    `SIGNATURE` in its folder atomically. A damaged version is refused (RegistryError)."""
    key = load_private_key(private_key_path)
    version = registry._intact(ref)  # the registry's own SHA-256 check, before signing
    message = signed_message(registry, version, stored_builds(registry, version))
    kid = key_id(key.public_key())
    signed_at = datetime.now(UTC).isoformat(timespec="seconds")
    doc = {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "version": version,
        "key_id": kid,
        "manifest_sha256": _manifest_sha256(message),
        "builds": json.loads(message).get("builds", {}),
        "signed_at": signed_at,
        "signature": base64.b64encode(key.sign(message)).decode("ascii"),
    }
    path = registry.root / version / SIGNATURE
    try:
        write_bytes_atomic(path, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o644)
    except OSError as e:
        raise RegistryError(f"cannot write {path}: {e.strerror or e}") from None
    return Signature(version=version, key_id=kid, signed_at=signed_at, path=path)


def verify_version(
    registry: Registry, ref: str, public_key: Ed25519PublicKey | Path, *,
    build_env: str | None = None,
) -> Signature:
    """Check that version `ref` is signed by `public_key` and unchanged since; raises
    SignatureError (exit 11) naming the version and the reason, RegistryError for an
    unknown version. The artifacts are re-hashed by `Registry.verify`. With `build_env`,
    the stored full image for that env must be covered too (stored before signing)."""
    from cryptography.exceptions import InvalidSignature

    key = public_key if not isinstance(public_key, Path) else load_public_key(public_key)
    expected = key_id(key)
    version = registry.resolve(ref)
    path = registry.root / version / SIGNATURE

    def refuse(reason: Reason, what: str, *, kid: str | None = None,
               hint: str | None = SIGN_HINT) -> SignatureError:
        return SignatureError(f"{version} {what}", version=version, reason=reason, key_id=kid,
                              expected_key_id=expected, hint=hint)

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise refuse("unsigned", f"is unsigned (no {SIGNATURE}) and a public key "
                     f"({expected}) is configured") from None
    except OSError as e:
        raise refuse("corrupt", f"has an unreadable {SIGNATURE}: {e.strerror or e}") from None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        kid, sig_b64 = doc["key_id"], doc["signature"]
        if doc.get("format") != FORMAT or doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"format {doc.get('format')!r} / algorithm "
                             f"{doc.get('algorithm')!r}, expected {FORMAT} / {ALGORITHM}")
        if not isinstance(kid, str) or not isinstance(sig_b64, str):
            raise ValueError("key_id and signature must be strings")
        try:
            signature = base64.b64decode(sig_b64, validate=True)
        except binascii.Error as e:
            raise ValueError(f"signature is not base64 ({e})") from None
    except (ValueError, KeyError) as e:  # ValueError: bad JSON or UTF-8
        reason = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise refuse("corrupt", f"has a corrupt {SIGNATURE}: {reason}") from None
    if kid != expected:
        raise refuse("wrong_key", f"is signed by another key: {kid}, the configured public "
                     f"key is {expected}", kid=kid,
                     hint="sign it with the configured key, or configure the key it was "
                     "signed with (`deploy.public_key`)")
    builds = doc.get("builds") or {}
    if build_env is not None and build_env not in builds:
        raise refuse("unsigned", f"has no signature over its stored {build_env} image (it "
                     "was built after the version was signed)", kid=kid,
                     hint=f"sign it again after the build: `tinyship registry sign {version} "
                     "--key PATH`")
    try:
        message = signed_message(registry, version, list(builds))
    except RegistryError as e:  # a version is signed only when intact: damage came later
        raise refuse("changed", f"was changed after signing: {e}", kid=kid,
                     hint=DAMAGED_HINT) from None
    try:
        key.verify(signature, message)
    except InvalidSignature:
        if doc.get("version") not in (None, version):
            raise refuse("changed", f"carries the signature of {doc.get('version')}, not its "
                         "own", kid=kid) from None
        if doc.get("manifest_sha256") != _manifest_sha256(message):
            raise refuse("changed", f"was changed after signing: {MANIFEST} differs from "
                         "the signed one", kid=kid, hint=DAMAGED_HINT) from None
        now = json.loads(message).get("builds", {})
        changed = sorted(e for e in builds if builds.get(e) != now.get(e))
        if changed:
            raise refuse("changed", "was changed after signing: the stored image of "
                         f"{', '.join(changed)} differs from the signed one (build.json)",
                         kid=kid, hint="rebuild from the signed version, or sign again "
                         "after checking the build") from None
        raise refuse("corrupt", f"has a signature that does not verify with key {expected} "
                     "(corrupt or forged)", kid=kid) from None
    problems = registry.verify(version)
    if problems:
        raise refuse("changed", "was changed after signing: " + "; ".join(problems), kid=kid,
                     hint=DAMAGED_HINT)
    signed_at = doc.get("signed_at")
    return Signature(version=version, key_id=kid,
                     signed_at=signed_at if isinstance(signed_at, str) else None, path=path)
