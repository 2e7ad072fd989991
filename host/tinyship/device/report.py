"""What `tinyship device info` concludes from a board's INFO record: the board's own health
(self-test, model CRC) and how its model compares with the registry (known version,
`production`, a newer production, SHA-256).

Pure functions over the `DeviceInfo.to_dict()` record and what the registry says; the only
registry reading is `registry_facts`, which reads aliases and manifests (JSON), never a
model, so `device info` stays fast and TensorFlow-free.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinyship.registry import Registry

_VERSION_RE = re.compile(r"^v(\d{4,})$")  # as tinyship.registry.VERSION_RE (not imported)
PRODUCTION = "production"


def version_number(version: str | None) -> int | None:
    """7 for `v0007`; None for anything that is not a registry version name.

    >>> version_number("v0012"), version_number("v0001-wrong"), version_number(None)
    (12, None, None)
    """
    m = _VERSION_RE.match(version or "")
    return int(m.group(1)) if m else None


def board_problems(info: dict[str, Any]) -> list[str]:
    """Why the board itself is unhealthy (empty: it is not, as far as it says): a failed
    self-test (outputs differ from the golden ones, or inference failed) or a model whose
    CRC check at boot failed. A self-test not run (no golden vectors) is no problem."""
    problems: list[str] = []
    st = info.get("self_test") or {}
    status = st.get("status_name")
    if status == "fail":
        problems.append(f"self-test failed: vector {st.get('failed_vector')} of "
                        f"{st.get('vectors')} differs from its golden output by "
                        f"{st.get('max_diff_lsb')} LSB")
    elif status == "infer-error":
        problems.append("self-test failed: the model could not run an inference")
    elif status is not None and status not in ("pass", "not-run"):
        problems.append(f"self-test status {status}")
    if info.get("model_crc_check") == "mismatch":
        problems.append("model CRC check failed: the model in the board's flash is corrupt")
    return problems


@dataclass(frozen=True)
class RunningModel:
    """Which model the board runs: the factory model, or a slot model (trial or confirmed)."""

    source: str  # "factory", "slot A", "slot B"
    slot: str | None  # "A", "B"; None for the factory model
    mode: str  # "confirmed", "trial"

    @property
    def trial(self) -> bool:
        return self.mode == "trial"

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> RunningModel | None:
        """None for a board without model slots (it runs its factory model)."""
        running = info.get("running")
        if not running:
            return None
        source = str(running.get("source_name"))
        slot = source.removeprefix("slot ") if source.startswith("slot ") else None
        return cls(source=source, slot=slot, mode=str(running.get("mode_name")))

    def describe(self) -> str:
        if self.slot is None:
            return f"{self.source} model ({self.mode})"
        if self.trial:
            return (f"slot {self.slot}, trial (not confirmed: `tinyship device confirm` keeps "
                    "it, a reset reverts it)")
        return f"slot {self.slot}, confirmed"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "slot": self.slot, "mode": self.mode,
                "trial": self.trial}


@dataclass(frozen=True)
class RegistryFacts:
    """What the registry says, as far as one board's report needs it."""

    root: str
    versions: list[str]
    aliases: dict[str, str]
    #: model.sha256 of each version (None: its manifest lacks one or is unreadable).
    sha256: dict[str, str | None] = field(default_factory=dict)


def registry_facts(reg: Registry) -> RegistryFacts:
    """Read aliases and every version's manifest `model.sha256` (JSON only). Raises
    RegistryError when the registry folder or its aliases file cannot be read."""
    from tinyship.errors import RegistryError

    versions = reg.versions()
    shas: dict[str, str | None] = {}
    for v in versions:
        try:
            sha = reg.manifest(v).get("model", {}).get("sha256")
        except (RegistryError, AttributeError):
            sha = None
        shas[v] = sha if isinstance(sha, str) else None
    return RegistryFacts(root=str(reg.root), versions=versions, aliases=reg.aliases(),
                         sha256=shas)


@dataclass(frozen=True)
class RegistryComparison:
    """The board's model against the registry (`compare`)."""

    registry: str
    model_version: str | None
    known: bool
    #: Aliases naming the board's version (e.g. ["production"]).
    aliases: list[str]
    production: str | None
    is_production: bool
    #: The production version when it is newer than the board's; else None.
    newer_production: str | None
    expected_sha256: str | None
    #: None when there is nothing to compare (unknown version, or no SHA on either side).
    sha256_match: bool | None
    #: For an unknown version or a mismatch: registry versions whose model has the board's
    #: SHA-256 (a known build reporting another version).
    same_model_as: list[str]
    running: RunningModel | None

    @property
    def tampered(self) -> bool:
        """A known version whose SHA-256 differs from the registry's."""
        return self.known and self.sha256_match is False

    def problems(self) -> list[str]:
        if not self.tampered:
            return []
        extra = (f"; it is the model of {', '.join(self.same_model_as)}"
                 if self.same_model_as else "")
        return [f"model SHA-256 on the board differs from the registry's {self.model_version}:"
                f" a tampered or unknown build{extra}"]

    def lines(self) -> list[str]:
        """Human-readable lines, one fact each."""
        v = self.model_version or "?"
        out = [f"registry: {self.registry}"]
        if self.known:
            named = f" ({', '.join(self.aliases)})" if self.aliases else ""
            out.append(f"  version {v}: known{named}")
        else:
            same = (f" (its SHA-256 is that of {', '.join(self.same_model_as)})"
                    if self.same_model_as else "")
            out.append(f"  version {v}: NOT in the registry{same}")
        if self.production is None:
            out.append("  production: not set")
        elif self.is_production:
            out.append(f"  production: yes ({self.production})")
        elif self.newer_production:
            out.append(f"  production: NEWER production available: {self.newer_production}")
        else:
            out.append(f"  production: no (production is {self.production})")
        if self.sha256_match is True:
            out.append("  sha256: matches the registry")
        elif self.sha256_match is False:
            out.append("  sha256: MISMATCH: " + self.problems()[0] if self.tampered
                       else "  sha256: MISMATCH")
        elif self.known:
            out.append("  sha256: not compared (no SHA-256 on the board or in the manifest)")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["running"] = self.running.to_dict() if self.running else None
        d["tampered"] = self.tampered
        return d


def compare(info: dict[str, Any], facts: RegistryFacts) -> RegistryComparison:
    """The board's INFO record (`DeviceInfo.to_dict()`) against the registry."""
    version = info.get("model_version")
    board_sha = info.get("model_sha256")
    known = version in facts.sha256
    production = facts.aliases.get(PRODUCTION)
    expected = facts.sha256.get(version) if known and version else None
    match = (board_sha.lower() == expected.lower()
             if isinstance(board_sha, str) and expected else None)
    newer = None
    if production is not None and production != version:
        prod_n, board_n = version_number(production), version_number(version)
        if prod_n is not None and board_n is not None and prod_n > board_n:
            newer = production
    same = ([v for v, s in facts.sha256.items()
             if s and isinstance(board_sha, str) and s.lower() == board_sha.lower()
             and v != version]
            if not match else [])
    return RegistryComparison(
        registry=facts.root, model_version=version, known=known,
        aliases=sorted(a for a, t in facts.aliases.items() if t == version and known),
        production=production, is_production=known and production == version,
        newer_production=newer, expected_sha256=expected, sha256_match=match,
        same_model_as=same, running=RunningModel.from_info(info))
