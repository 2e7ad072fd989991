"""Persistent state of a virtual board: what it holds in flash, and the core's storage.

`<state_dir>/state.json`, always replaced atomically (temp file + fsync + os.replace):

    {
      "schema": 1,
      "slots": {"a": {"model_version": "v0003", "sha256": "...", "firmware_version": "0.1.0"},
                "b": null},
      "active": "a",
      "boot_count": 7,
      "storage": {"1": "07000000"},
      "app": {"status": "valid", "firmware_version": "0.1.0", "model_version": "v0002",
              "image_sha256": "...", "bytes": 31337}
    }

`storage` holds the core's key/value storage (key -> hex bytes); key 1 is the boot
counter, mirrored as `boot_count` for people. Two slots are there for A/B updates: today
the board always writes the model it serves into the active slot (the firmware it booted).
`app` is what the board's ROM last found in its application region (`bootloader`): null
until a full image upload first touched it, then "uploading" (written before the
bootloader's first erase or program), "valid" (with the image booted) or "invalid" (with
the reason the board stays in its bootloader).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from tinyship.atomic import write_text_atomic
from tinyship.errors import DeviceError

STATE_FILE = "state.json"
SCHEMA = 1


def empty_state() -> dict[str, Any]:
    return {"schema": SCHEMA, "slots": {"a": None, "b": None}, "active": "a",
            "boot_count": 0, "storage": {}, "app": None}


class BoardState:
    """Thread-safe view of `state.json`; every change is written through atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE
        self._lock = threading.Lock()
        self._data = self._load()

    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return empty_state()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DeviceError(f"{self.path}: unreadable virtual board state: {e}",
                              hint="delete the file to start from an erased board") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise DeviceError(f"{self.path}: not a schema {SCHEMA} virtual board state")
        base = empty_state()
        base.update(data)
        return base

    def _save(self) -> None:
        write_text_atomic(self.path, json.dumps(self._data, indent=2, sort_keys=True) + "\n")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = json.loads(json.dumps(self._data))
            return out

    @property
    def boot_count(self) -> int:
        with self._lock:
            return int(self._data.get("boot_count", 0))

    def install(self, model_version: str, sha256: str, firmware_version: str) -> None:
        """Put a model in the active slot (what flashing does), keeping storage."""
        with self._lock:
            slot = {"model_version": model_version, "sha256": sha256,
                    "firmware_version": firmware_version}
            active = str(self._data.get("active", "a"))
            if self._data["slots"].get(active) != slot:
                self._data["slots"][active] = slot
                self._save()

    @property
    def app(self) -> dict[str, Any] | None:
        """The application region's last record (see the module docstring)."""
        with self._lock:
            record = self._data.get("app")
            return dict(record) if isinstance(record, dict) else None

    def record_app(self, record: dict[str, Any]) -> None:
        """Replace the application region's record (written only when it changes)."""
        with self._lock:
            if self._data.get("app") != record:
                self._data["app"] = dict(record)
                self._save()

    def device_id(self) -> bytes:
        """The board's hardware-unique id: 8 random bytes chosen once, kept in the state
        (as a chip's id survives any reflash)."""
        with self._lock:
            raw = self._data.get("device_id")
            if isinstance(raw, str) and len(raw) == 16:
                try:
                    return bytes.fromhex(raw)
                except ValueError:
                    pass
            new = os.urandom(8)
            self._data["device_id"] = new.hex()
            self._save()
            return new

    def storage_read(self, key: int, size: int) -> bytes:
        """Stored bytes for `key`, or erased flash (0xFF) when never written."""
        with self._lock:
            raw = self._data["storage"].get(str(key))
        data = bytes.fromhex(raw) if isinstance(raw, str) else b""
        return (data + b"\xff" * size)[:size]

    def storage_write(self, key: int, data: bytes) -> None:
        with self._lock:
            self._data["storage"][str(key)] = data.hex()
            if key == 1 and len(data) == 4:
                self._data["boot_count"] = int.from_bytes(data, "little")
            self._save()
