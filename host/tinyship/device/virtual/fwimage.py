"""What a virtual board runs (`Firmware`), and its full firmware image format.

On a real board a full image is the firmware build with its factory model compiled in; on
the virtual board (issue 12) it is the firmware version plus the registry version it was
built for: model, manifest and the golden vectors its self-test runs. The board's ROM reads
it from the application region of its flash (`bootloader`), so an image travels the same
way as on hardware: uploaded, verified by readback, booted.

Layout (integers little endian):

    header  "TSFW" | format u32 | meta, model, golden-in, golden-out lengths u32 x4
    body    meta (JSON, sorted keys) | model | golden inputs | golden outputs (int8)
    trailer CRC-32 u32 | SHA-256 (32 bytes), both over header + body

The same inputs always give the same bytes, so an image's SHA-256 names it.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tinyship import __version__
from tinyship.convert.golden import EMBEDDED_GOLDEN_CC, parse_embedded_golden
from tinyship.errors import RegistryError
from tinyship.registry import Registry

MAGIC = b"TSFW"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sIIIII")
_TRAILER = struct.Struct("<I32s")
HEADER_BYTES = _HEADER.size


@dataclass(frozen=True)
class Firmware:
    """What the virtual board is "flashed" with: one registry version, and the tinyship
    version of the firmware that embeds it (reported in INFO)."""

    version: str
    model: bytes
    manifest: dict[str, Any]
    golden_inputs: np.ndarray  # (count, input_size) int8
    golden_outputs: np.ndarray  # (count, output_size) int8
    firmware_version: str = __version__

    @property
    def sha256(self) -> str:
        return str(self.manifest["model"]["sha256"])

    @property
    def crc32(self) -> int:
        return int(self.manifest["model"]["crc32"])

    @property
    def input_size(self) -> int:
        return int(np.prod(self.manifest["model"]["input"]["shape"]))

    @property
    def output_size(self) -> int:
        return int(np.prod(self.manifest["model"]["output"]["shape"]))


def _io_sizes(manifest: dict[str, Any]) -> tuple[int, int]:
    """Input and output vector sizes; KeyError/TypeError naming what a firmware needs from
    the manifest and it lacks."""
    m = manifest["model"]
    for key in ("sha256", "crc32", "input", "output"):
        if key not in m:
            raise KeyError(f"model.{key}")
    return int(np.prod(m["input"]["shape"])), int(np.prod(m["output"]["shape"]))


def load_firmware(registry: Registry | Path | str, ref: str | None) -> Firmware:
    """A registry version with its model bytes and the golden vectors its firmware embeds
    (parsed from the generated `firmware/tinyship_model_data.cc`)."""
    reg = registry if isinstance(registry, Registry) else Registry(Path(registry))
    version = reg.resolve(ref)
    manifest = reg.manifest(version)
    # Hash-checked reads: a truncated model would otherwise crash the TFLM loader.
    model = reg.read_artifact(version, "model_int8.tflite")
    try:
        n_in, n_out = _io_sizes(manifest)
    except (KeyError, TypeError) as e:
        raise RegistryError(f"registry version {version} is incomplete: {e}") from None
    gi = np.zeros((0, n_in), dtype=np.int8)
    go = np.zeros((0, n_out), dtype=np.int8)
    if EMBEDDED_GOLDEN_CC in reg.artifacts(version):
        text = reg.read_artifact(version, EMBEDDED_GOLDEN_CC).decode("utf-8", errors="replace")
        try:
            gi, go = parse_embedded_golden(text, n_in, n_out)
        except ValueError as e:
            raise RegistryError(f"{reg.path(version) / EMBEDDED_GOLDEN_CC}: {e}") from None
    return Firmware(version=version, model=model, manifest=manifest, golden_inputs=gi,
                    golden_outputs=go)


# --- the full image ----------------------------------------------------------------------


class VirtualImageError(ValueError):
    """Bytes that are not a whole, intact virtual firmware image (the message says why)."""


@dataclass(frozen=True)
class VirtualImage:
    """A parsed, verified image."""

    firmware_version: str
    version: str
    manifest: dict[str, Any]
    model: bytes
    golden_inputs: np.ndarray  # (count, input_size) int8
    golden_outputs: np.ndarray  # (count, output_size) int8
    sha256: str  # of the whole image
    size: int

    def to_firmware(self) -> Firmware:
        return Firmware(self.version, self.model, self.manifest, self.golden_inputs,
                        self.golden_outputs, firmware_version=self.firmware_version)


def encode_virtual_image(fw: Firmware) -> bytes:
    """The image of `fw` (deterministic: the same firmware gives the same bytes)."""
    meta = json.dumps({"firmware_version": fw.firmware_version, "version": fw.version,
                       "manifest": fw.manifest, "golden_count": len(fw.golden_inputs)},
                      sort_keys=True, separators=(",", ":")).encode()
    gi = np.ascontiguousarray(fw.golden_inputs, dtype=np.int8).tobytes()
    go = np.ascontiguousarray(fw.golden_outputs, dtype=np.int8).tobytes()
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, len(meta), len(fw.model), len(gi), len(go))
    data = head + meta + fw.model + gi + go
    return data + _TRAILER.pack(zlib.crc32(data), hashlib.sha256(data).digest())


def build_virtual_image(registry: Registry, version: str, *,
                        firmware_version: str = __version__) -> bytes:
    """The full image of registry `version` for a virtual board, from hash-checked reads."""
    fw = load_firmware(registry, version)
    return encode_virtual_image(replace(fw, firmware_version=firmware_version))


def image_size(head: bytes) -> int:
    """Total bytes of the image whose first `HEADER_BYTES` are `head` (checks its magic and
    format version: enough to know how much to read back from flash)."""
    if len(head) < HEADER_BYTES:
        raise VirtualImageError(f"truncated: {len(head)} bytes, the header alone is "
                                f"{HEADER_BYTES}")
    magic, fmt, *lengths = _HEADER.unpack_from(head)
    if magic == b"\xff" * 4:
        raise VirtualImageError("erased (no image)")
    if magic != MAGIC:
        raise VirtualImageError(f"not a virtual firmware image (magic {magic!r}, expected "
                                f"{MAGIC!r})")
    if fmt != FORMAT_VERSION:
        raise VirtualImageError(f"image format {fmt}, this tinyship reads {FORMAT_VERSION}")
    return HEADER_BYTES + sum(int(n) for n in lengths) + _TRAILER.size


def parse_virtual_image(data: bytes) -> VirtualImage:
    """Verify and decode a whole image: VirtualImageError names the first check it fails
    (magic, format, length, CRC-32, SHA-256, metadata, model hash, golden vector sizes)."""
    size = image_size(data)
    if len(data) != size:
        raise VirtualImageError(f"{len(data)} bytes, its header says {size}")
    body = data[:-_TRAILER.size]
    crc, digest = _TRAILER.unpack_from(data, len(body))
    if zlib.crc32(body) != crc:
        raise VirtualImageError("CRC-32 mismatch (a torn or partial write?)")
    if hashlib.sha256(body).digest() != digest:
        raise VirtualImageError("SHA-256 mismatch")
    _, _, n_meta, n_model, n_in, n_out = _HEADER.unpack_from(data)
    at = HEADER_BYTES + n_meta
    try:
        meta = json.loads(data[HEADER_BYTES:at])
        manifest = meta["manifest"]
        shapes = _io_sizes(manifest)
        count = int(meta["golden_count"])
        firmware_version, version = str(meta["firmware_version"]), str(meta["version"])
    except (ValueError, KeyError, TypeError) as e:
        raise VirtualImageError(f"metadata unreadable: {e!r}") from None
    model = data[at:at + n_model]
    if hashlib.sha256(model).hexdigest() != manifest["model"]["sha256"]:
        raise VirtualImageError(f"the model is not the one its manifest ({version}) names")
    if (n_in, n_out) != (count * shapes[0], count * shapes[1]):
        raise VirtualImageError(f"golden vectors of {n_in}+{n_out} bytes do not fit "
                                f"{count} vectors of {shapes[0]} in, {shapes[1]} out")
    at += n_model
    gi = np.frombuffer(data, np.int8, n_in, at).reshape(count, shapes[0])
    go = np.frombuffer(data, np.int8, n_out, at + n_in).reshape(count, shapes[1])
    return VirtualImage(firmware_version, version, manifest, model, gi, go,
                        hashlib.sha256(data).hexdigest(), size)
