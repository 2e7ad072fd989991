"""Link figures of a HIL run: what moved, per direction, and how much of a physical link.

Every figure is computed from bytes the host's transport actually wrote and read while the
test set streamed (resends and line noise included) over the host's wall-clock duration of
the stream; nothing is inferred from frame sizes.

* `host_to_device.bytes_per_s`, `device_to_host.bytes_per_s`: wire bytes per second, each
  direction on its own (a UART is full duplex: each direction has its own wire).
* `input_payload.bytes_per_s`: int8 input bytes per second (`input_size` x vectors/s), the
  part of the host->device bytes that is model input.
* `utilization` (each of the three): that rate over the physical byte rate of one direction,
  `baud / 10` bytes/s for a UART at 8N1 (start bit, 8 data bits, stop bit). Reported only
  when the baud rate is physical (`physical_rate`); USB CDC, a pty or a TCP socket have no
  byte rate of their own, and there the figures are vectors/s and bytes/s only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinyship.device.protocol import UART_BITS_PER_BYTE, LinkInfo, LinkKind


@dataclass(frozen=True)
class LinkRate:
    """Whether the link has a physical byte rate, and who said so."""

    #: `uart`, `usb-cdc`, `stream` (pty, socket, unpaced emulator) or `unknown`.
    kind: str
    #: Physical bit rate of each direction, or None when the link has none.
    baud: int | None
    #: `device` (its INFO LINK tag), `user` (--baud, for firmware that does not report its
    #: link) or `none` (neither: no utilisation is computed).
    source: str

    @property
    def byte_rate(self) -> float | None:
        """Bytes per second one direction carries at 8N1, or None."""
        return self.baud / UART_BITS_PER_BYTE if self.baud else None


def physical_rate(device_link: LinkInfo | None, user_baud: int | None) -> LinkRate:
    """The device's word first: a board that reports a UART has that baud rate, one that
    reports USB CDC or a stream has none, whatever the port was opened with. Firmware that
    does not report its link (older than the LINK tag, or kind unknown) is taken to be on a
    UART only when the user said so by passing a baud rate (`user_baud`)."""
    if device_link is not None and device_link.kind != LinkKind.UNKNOWN:
        if device_link.physical:
            return LinkRate("uart", device_link.baud, "device")
        return LinkRate(device_link.kind_name, None, "device")
    if user_baud:
        return LinkRate("uart", user_baud, "user")
    return LinkRate("unknown", None, "none")


def _direction(nbytes: int, elapsed_s: float, byte_rate: float | None) -> dict[str, Any]:
    per_s = nbytes / elapsed_s if elapsed_s > 0 else None
    util = per_s / byte_rate if per_s is not None and byte_rate else None
    return {"bytes": nbytes, "bytes_per_s": per_s, "utilization": util}


def link_figures(*, vectors: int, input_size: int, bytes_tx: int, bytes_rx: int,
                 elapsed_s: float, rate: LinkRate, rx_window: int | None) -> dict[str, Any]:
    """The report's `link` object (module docstring): per direction, from bytes moved.

    >>> r = link_figures(vectors=1000, input_size=8, bytes_tx=10_368, bytes_rx=6_000,
    ...                  elapsed_s=1.0, rate=LinkRate("uart", 115200, "device"), rx_window=256)
    >>> r["host_to_device"]["utilization"], r["input_payload"]["utilization"]
    (0.9, 0.6944444444444444)
    >>> link_figures(vectors=1000, input_size=8, bytes_tx=10_368, bytes_rx=6_000,
    ...     elapsed_s=1.0, rate=LinkRate("usb-cdc", None, "device"), rx_window=None
    ...     )["host_to_device"]["utilization"] is None
    True
    """
    br = rate.byte_rate
    return {
        "kind": rate.kind,
        "physical": br is not None,
        "baud": rate.baud,
        "source": rate.source,
        "byte_rate": br,
        "rx_window": rx_window,
        "elapsed_s": elapsed_s,
        "vectors": vectors,
        "vectors_per_s": vectors / elapsed_s if elapsed_s > 0 else None,
        "host_to_device": _direction(bytes_tx, elapsed_s, br),
        "device_to_host": _direction(bytes_rx, elapsed_s, br),
        "input_payload": _direction(vectors * input_size, elapsed_s, br),
    }


def describe(link: dict[str, Any]) -> str:
    """One line for people: rates per direction, with the share of the wire if physical."""
    if not link:
        return "no link figures"

    def one(name: str, d: dict[str, Any]) -> str:
        rate = d.get("bytes_per_s")
        text = f"{name} {rate:,.0f} B/s" if rate is not None else f"{name} -"
        if d.get("utilization") is not None:
            text += f" ({d['utilization']:.0%})"
        return text

    vps = link.get("vectors_per_s")
    head = f"{vps:,.0f} vectors/s" if vps is not None else "- vectors/s"
    parts = [one("host->device", link["host_to_device"]),
             one("device->host", link["device_to_host"]),
             one("input payload", link["input_payload"])]
    if link.get("physical"):
        tail = (f"of {link['byte_rate']:,.0f} B/s per direction (UART {link['baud']} 8N1, "
                f"per {link['source']})")
    else:
        tail = f"{link.get('kind', 'unknown')} link: no physical byte rate"
    return f"{head}; {', '.join(parts)}; {tail}"
