"""The model registry: immutable, numbered versions in a folder, plus atomic aliases.

Layout (`models/` by default):

    models/
      aliases.json          {"production": "v0002", "last_known_good": "v0001"}
      holds.json            {"production": {"reason", "author", "host", "since"}}: aliases a
                            person has held; automatic promotion to them is refused
      v0001/
        manifest.json       version, parent, config, data fingerprint, metrics, gates, hashes
        MODEL_CARD.md
        model.keras, model_float.tflite, model_int8.tflite
        firmware/           tinyship_model_data.{h,cc}, tinyship_model_ops.h
        test_set.npz        held-out rows (float features, target) for HIL validation

A version is built in a hidden temporary folder and renamed into place only when
complete, so readers never see half a version; aliases (and holds) are replaced
atomically under the registry's lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinyship.atomic import write_text_atomic
from tinyship.errors import PolicyError, RegistryError

if TYPE_CHECKING:
    from tinyship.audit import AuditLog

VERSION_RE = re.compile(r"^v(\d{4,})$")
MANIFEST = "manifest.json"
ALIASES = "aliases.json"
HOLDS = "holds.json"
#: Aliases with a meaning the tools rely on.
PRODUCTION = "production"
LAST_KNOWN_GOOD = "last_known_good"
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
#: What to do about a damaged version, on every error that finds one.
DAMAGED_HINT = (
    "restore it from a backup or retrain; `tinyship registry verify` checks every version"
)


def format_version(n: int) -> str:
    return f"v{n:04d}"


def _reason(e: Exception) -> str:
    """An OS error's reason without the path the message already names."""
    return str(e.strerror) if isinstance(e, OSError) and e.strerror else str(e)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class StagedVersion:
    """A version being written; `dir` is private until `Registry.stage` commits it."""

    dir: Path
    parent: str | None
    manifest: dict[str, Any] = field(default_factory=dict)
    version: str | None = None  # the number this version will get


@dataclass(frozen=True)
class Hold:
    """A person's hold on an alias: while it stands, automatic promotion to it is refused."""

    alias: str
    reason: str
    author: str
    host: str
    since: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


class PromotionHeld(PolicyError):
    """Automatic promotion refused because a person holds the alias (exit code 11: refused,
    nothing changed). A person's `tinyship registry promote` still works: it is the
    override."""

    def __init__(self, message: str, *, hold: Hold, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.hold = hold


def _check_alias_name(alias: str) -> None:
    if not ALIAS_RE.match(alias) or VERSION_RE.match(alias) or alias == "latest":
        raise RegistryError(f"invalid alias name '{alias}'")


class Registry:
    """A folder of immutable model versions."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- reading ---------------------------------------------------------------------
    def versions(self) -> list[str]:
        """All complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        try:
            entries = list(self.root.iterdir())
        except OSError as e:
            raise RegistryError(f"cannot read registry folder {self.root}: {_reason(e)}") from None
        for p in entries:
            m = VERSION_RE.match(p.name)
            if m and (p / MANIFEST).is_file():
                found.append((int(m.group(1)), p.name))
        return [name for _, name in sorted(found)]

    def latest(self) -> str | None:
        vs = self.versions()
        return vs[-1] if vs else None

    def aliases(self) -> dict[str, str]:
        p = self.root / ALIASES
        if not p.is_file():
            return {}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
            raise RegistryError(f"{p}: corrupt aliases file: {_reason(e)}") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{p}: expected a JSON object of alias -> version")
        return {str(k): str(v) for k, v in data.items()}

    def holds(self) -> dict[str, Hold]:
        """Held aliases. A damaged holds file is an error, never "no holds": automatic
        promotion must fail closed."""
        p = self.root / HOLDS
        if not p.is_file():
            return {}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object of alias -> hold")
            return {str(a): Hold(alias=str(a), reason=str(h["reason"]), author=str(h["author"]),
                                 host=str(h["host"]), since=str(h["since"]))
                    for a, h in data.items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RegistryError(f"{p}: corrupt holds file: {_reason(e)}",
                                hint="fix or remove it by hand after checking who held what; "
                                "automatic promotion stays refused until then") from None

    def held(self, alias: str = PRODUCTION) -> Hold | None:
        """The hold on `alias`, or None: the retrain job's "may I promote automatically?"."""
        return self.holds().get(alias)

    def resolve(self, ref: str | None = None) -> str:
        """A version name from a version, an alias, or `latest`; None means the default:
        the `production` alias if set, else the newest version."""
        if ref is None:
            ref = PRODUCTION if PRODUCTION in self.aliases() else "latest"
        if ref == "latest":
            v = self.latest()
            if v is None:
                raise RegistryError(
                    f"registry {self.root} has no versions",
                    hint="run `tinyship train` first",
                )
            return v
        aliases = self.aliases()
        version = aliases.get(ref, ref)
        if not VERSION_RE.match(version) or not (self.root / version / MANIFEST).is_file():
            known = ", ".join(self.versions()[-5:]) or "none"
            raise RegistryError(
                f"no version or alias '{ref}' in registry {self.root} (recent versions: {known})"
            )
        return version

    def path(self, ref: str | None = None) -> Path:
        return self.root / self.resolve(ref)

    def manifest(self, ref: str | None = None) -> dict[str, Any]:
        """A version's manifest; RegistryError (naming the file) if it is not a readable
        JSON object, so one damaged version never surfaces as a traceback."""
        p = self.path(ref) / MANIFEST
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
            raise RegistryError(f"{p}: corrupt manifest: {_reason(e)}", hint=DAMAGED_HINT) from None
        if not isinstance(data, dict):
            raise RegistryError(f"{p}: corrupt manifest: expected a JSON object, got "
                                f"{type(data).__name__}", hint=DAMAGED_HINT)
        return data

    def artifacts(self, ref: str | None = None) -> dict[str, str]:
        """The manifest's artifact -> SHA-256 map; RegistryError if absent or malformed,
        since without it nothing in the version can be trusted."""
        version = self.resolve(ref)
        raw = self.manifest(version).get("artifacts")
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
        ):
            raise RegistryError(
                f"{self.root / version / MANIFEST}: corrupt manifest: 'artifacts' must map "
                "file names to SHA-256 digests", hint=DAMAGED_HINT,
            )
        return dict(raw)

    def read_artifact(self, ref: str | None, relpath: str) -> bytes:
        """An artifact's bytes, refused unless they match the manifest's SHA-256: a truncated
        or edited model must stop here with its name, not crash a parser further on."""
        version = self.resolve(ref)
        label = f"{version}/{relpath}"
        expected = self.artifacts(version).get(relpath)
        if expected is None:
            raise RegistryError(f"{label} is not listed in {version}/{MANIFEST}, so it cannot "
                                "be verified", hint=DAMAGED_HINT)
        try:
            data = (self.root / version / relpath).read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"{label} is missing", hint=DAMAGED_HINT) from None
        except OSError as e:
            raise RegistryError(f"{label} is unreadable: {_reason(e)}", hint=DAMAGED_HINT) from None
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise RegistryError(f"{label} is damaged: SHA-256 mismatch (expected {expected}, "
                                f"got {got})", hint=DAMAGED_HINT)
        return data

    def verify(self, ref: str | None = None) -> list[str]:
        """Everything wrong with a version (empty: intact): an unusable manifest, or artifacts
        missing or no longer matching its SHA-256. Only an unknown `ref` raises."""
        version = self.resolve(ref)
        vdir = self.root / version
        try:
            declared = self.manifest(version).get("version")
            artifacts = self.artifacts(version)
        except RegistryError as e:  # reported like any other problem, relative to the version
            return [str(e).removeprefix(f"{vdir}{os.sep}")]
        problems = []
        if declared != version:
            problems.append(f"{MANIFEST}: says version {declared!r}")
        for rel, digest in artifacts.items():
            f = vdir / rel
            if not f.is_file():
                problems.append(f"{rel}: missing")
                continue
            try:
                if sha256_file(f) != digest:
                    problems.append(f"{rel}: SHA-256 mismatch")
            except OSError as e:
                problems.append(f"{rel}: unreadable ({_reason(e)})")
        return problems

    def verify_all(self) -> dict[str, list[str]]:
        """`verify` for every version, oldest first, so damage to an old version (a rollback
        target) is found too, not only in the newest."""
        return {v: self.verify(v) for v in self.versions()}

    def check_writable(self) -> None:
        """Fail before minutes of training, not after, when no version could be stored.

        Changes nothing (a run that then fails on bad data leaves no folder or lock file
        behind): the registry folder, or the nearest existing folder above it, must be a
        writable folder, and an existing lock file must be a writable file."""
        import errno

        def refuse(code: int) -> RegistryError:
            return self._unwritable(OSError(code, os.strerror(code)))

        existing = self.root
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise refuse(errno.ENOTDIR)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise refuse(errno.EACCES)
        lock = self.root / ".lock"
        if lock.exists() and not lock.is_file():
            raise refuse(errno.EISDIR)
        if lock.exists() and not os.access(lock, os.W_OK):
            raise refuse(errno.EACCES)

    def _unwritable(self, e: OSError) -> RegistryError:
        return RegistryError(
            f"registry folder {self.root} is not writable: {_reason(e)}",
            hint="fix its permissions, or choose another folder (`--registry` or "
            "`project.registry` in tinyship.toml)",
        )

    # --- writing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self) -> Iterator[StagedVersion]:
        """Build the next version in a temp folder, holding the registry lock so its number
        (embedded in the C files) is ours. On clean exit the artifacts are hashed, the
        manifest written last, and the folder renamed into place; on error nothing remains."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._unwritable(e) from None
        with self._lock():
            last = self.latest()
            n = int(VERSION_RE.match(last).group(1)) + 1 if last else 1  # type: ignore[union-attr]
            try:
                tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
            except OSError as e:
                raise self._unwritable(e) from None
            staged = StagedVersion(dir=tmp, parent=last, version=format_version(n))
            try:
                yield staged
                try:
                    self._commit(staged)
                except OSError as e:  # only the registry's own writes, not the caller's
                    raise RegistryError(
                        f"cannot store {staged.version} in registry {self.root}: {_reason(e)}"
                    ) from None
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Exclusive lock on the registry folder (advisory; POSIX flock where available)."""
        lock_path = self.root / ".lock"
        try:
            f = lock_path.open("a")
        except OSError as e:
            raise self._unwritable(e) from None
        with f:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: single writer assumed
                yield
                return
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            except OSError as e:
                raise RegistryError(f"cannot lock {lock_path}: {_reason(e)}") from None
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _commit(self, staged: StagedVersion) -> None:
        assert staged.version is not None
        manifest = dict(staged.manifest)
        manifest["version"] = staged.version
        manifest["parent"] = staged.parent
        manifest["artifacts"] = {
            p.relative_to(staged.dir).as_posix(): sha256_file(p)
            for p in sorted(staged.dir.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        text = json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
        with (staged.dir / MANIFEST).open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        target = self.root / staged.version
        if target.exists():
            raise RegistryError(f"{target} already exists; registry versions are immutable")
        os.rename(staged.dir, target)

    def _intact(self, ref: str) -> str:
        """The version `ref` names, refused when any artifact fails its hash: an alias is
        what builds and boards use by default, so it must never point at a damaged one."""
        version = self.resolve(ref)
        problems = self.verify(version)
        if problems:
            raise RegistryError(f"{version} is damaged: " + "; ".join(problems),
                                hint=DAMAGED_HINT)
        return version

    def set_alias(self, alias: str, ref: str) -> dict[str, str]:
        """Point `alias` at a version (atomically); returns the new alias map."""
        _check_alias_name(alias)
        version = self._intact(ref)
        with self._lock():
            aliases = self.aliases()
            aliases[alias] = version
            self._write_aliases(aliases)
        return aliases

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        try:
            write_text_atomic(self.root / ALIASES,
                              json.dumps(aliases, indent=2, sort_keys=True) + "\n")
        except OSError as e:
            raise self._unwritable(e) from None

    def promote(
        self,
        ref: str,
        *,
        automatic: bool = False,
        audit: AuditLog | None = None,
        run_id: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> dict[str, str]:
        """Make a version `production`; the previous production becomes `last_known_good`.

        `automatic=True` (the retrain job) is refused with `PromotionHeld` while a person
        holds `production`, checked under the lock so a hold placed a moment earlier wins.
        A person's promotion (the default) is the override and goes ahead. With `audit`,
        the promotion, or the hold met (kind `hold`, decision `awaiting_approval`), is
        appended to it (under the lock, so the log's order
        is the aliases' order), with `run_id`, `reason` and `details`."""
        version = self._intact(ref)
        with self._lock():
            aliases = self.aliases()
            previous = aliases.get(PRODUCTION)
            hold = self.held(PRODUCTION)
            facts = {**(details or {}), "automatic": automatic, "previous": previous,
                     "hold": hold.to_json() if hold else None}
            if automatic and hold is not None:
                if audit is not None:
                    audit.record("hold", run_id=run_id, champion=previous,
                                 challenger=version, decision="awaiting_approval",
                                 reason=f"production is held: {hold.reason}", details=facts)
                raise PromotionHeld(
                    f"automatic promotion of {version} refused: production is held by "
                    f"{hold.author} since {hold.since} ({hold.reason})", hold=hold,
                    hint=f"a person promotes it with `tinyship registry promote {version}`, "
                    "or releases the hold with `tinyship registry release production`")
            if previous and previous != version:
                aliases[LAST_KNOWN_GOOD] = previous
            aliases[PRODUCTION] = version
            self._write_aliases(aliases)
            if audit is not None:
                decision = "automatic" if automatic else (
                    "manual_override" if hold is not None else "manual")
                audit.record("promotion", run_id=run_id, champion=previous, challenger=version,
                             decision=decision, reason=reason, details=facts)
        return aliases

    def _write_holds(self, holds: dict[str, Hold]) -> None:
        body = {a: {k: v for k, v in h.to_json().items() if k != "alias"}
                for a, h in sorted(holds.items())}
        try:
            write_text_atomic(self.root / HOLDS, json.dumps(body, indent=2) + "\n")
        except OSError as e:
            raise self._unwritable(e) from None

    def hold(self, alias: str, reason: str, *, author: str | None = None,
             audit: AuditLog | None = None, run_id: str | None = None) -> Hold:
        """Hold `alias` (usually `production`): automatic promotion to it is refused until
        `release`. Holding it again replaces the reason. `author` defaults to
        `tinyship.audit.current_author()`; with `audit`, the hold is appended to it."""
        from tinyship.audit import current_author
        from tinyship.sqlite_log import now_iso

        _check_alias_name(alias)
        if not reason.strip():
            raise RegistryError("a hold needs a reason (who should approve, and why)")
        new = Hold(alias=alias, reason=reason.strip(), author=author or current_author(),
                   host=socket.gethostname(), since=now_iso())
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._unwritable(e) from None
        with self._lock():
            holds = self.holds()
            replaced = holds.get(alias)
            holds[alias] = new
            self._write_holds(holds)
            if audit is not None:
                audit.record("hold", run_id=run_id, champion=self.aliases().get(alias),
                             decision="held", reason=new.reason, author=new.author,
                             details={"alias": alias,
                                      "replaces": replaced.to_json() if replaced else None})
        return new

    def release(self, alias: str, *, author: str | None = None,
                audit: AuditLog | None = None, run_id: str | None = None) -> Hold | None:
        """Release the hold on `alias`; returns it, or None when it was not held (nothing
        changes then, and nothing is logged)."""
        if alias not in self.holds():  # no lock file created in a registry never held
            return None
        with self._lock():
            holds = self.holds()
            released = holds.pop(alias, None)
            if released is None:
                return None
            self._write_holds(holds)
            if audit is not None:
                audit.record("release", run_id=run_id, champion=self.aliases().get(alias),
                             decision="released", reason=released.reason, author=author,
                             details={"alias": alias, "hold": released.to_json()})
        return released
