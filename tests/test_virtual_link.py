"""The virtual board's modelled UART (`tinyship.device.virtual.link`), on explicit times.

No board, no threads, no sleeping: the model is driven with chosen wall-clock times and a
fake core, so every figure is exact.
"""

from __future__ import annotations

import pytest

from tinyship.device.virtual.link import DEFAULT_RX_BUFFER, UartLink

BAUD = 115_200
BYTE_S = 10 / BAUD


class FakeCore:
    """Reads bytes; on a 0x00 it "runs a request": `busy_s` of compute, then a reply."""

    def __init__(self, link: UartLink, *, busy_s: float = 0.0, reply: bytes = b"") -> None:
        self.link, self.busy_s, self.reply = link, busy_s, reply
        self.read: list[tuple[float, int]] = []

    def feed(self, b: int) -> None:
        self.read.append((self.link.core_time(0.0), b))
        if b == 0:
            self.link.core_busy(self.busy_s)
            self.link.device_wrote(self.reply, 0.0)


def test_bytes_take_ten_bit_times_and_an_idle_core_reads_them_as_they_arrive() -> None:
    link = UartLink(BAUD)
    core = FakeCore(link)
    link.host_wrote(b"\x01\x02\x03", now=1.0)
    link.step(1.0 + 2.5 * BYTE_S, core.feed)
    assert [b for _, b in core.read] == [1, 2]  # the third is still on the wire
    link.step(10.0, core.feed)
    assert [b for _, b in core.read] == [1, 2, 3]
    assert [t for t, _ in core.read] == pytest.approx([1.0 + (i + 1) * BYTE_S for i in range(3)])
    s = link.stats
    assert s.rx_bytes == 3 and s.overflow == 0 and s.rx_buffer_peak == 1
    assert s.rx_first_start == 1.0 and s.rx_last_end == pytest.approx(1.0 + 3 * BYTE_S)


def test_bytes_arriving_while_the_core_is_busy_beyond_the_buffer_are_lost() -> None:
    link = UartLink(BAUD)
    core = FakeCore(link, busy_s=1.0)  # one second on the request ending at byte 0
    data = b"\x00" + bytes(range(1, 256)) + bytes(range(1, 46))  # 1 + 300 bytes
    link.host_wrote(data, now=0.0)
    link.step(0.5, core.feed)  # all arrived, the core is still busy
    assert len(core.read) == 1
    assert link.stats.overflow == 300 - DEFAULT_RX_BUFFER == 44
    assert link.stats.rx_buffer_peak == DEFAULT_RX_BUFFER
    link.step(2.0, core.feed)  # busy over: the buffer is read, the overflow is gone
    assert [b for _, b in core.read[1:]] == list(data[1:257])
    assert core.read[1][0] == pytest.approx(BYTE_S + 1.0)  # read when the core got free
    assert link.take_overflow() == 44 and link.take_overflow() == 0


def test_a_write_blocks_the_core_until_it_has_left_the_wire() -> None:
    link = UartLink(BAUD)
    reply = bytes(range(1, 101))
    core = FakeCore(link, busy_s=0.001, reply=reply)
    link.host_wrote(b"\x00\x07", now=0.0)
    link.step(0.05, core.feed)
    t_req = BYTE_S  # the 0x00 arrived, the core computed 1 ms, then wrote 100 bytes
    tx_end = t_req + 0.001 + 100 * BYTE_S
    # the second byte arrived meanwhile and is read only once the write has returned
    assert core.read[1][1] == 7 and core.read[1][0] == pytest.approx(tx_end)
    assert link.take_tx(t_req + 0.001 + 10.5 * BYTE_S) == reply[:10]
    assert link.next_event() == pytest.approx(t_req + 0.001 + 11 * BYTE_S)
    assert link.take_tx(1.0) == reply[10:]
    s = link.stats
    assert s.tx_bytes == 100 and s.tx_last_end == pytest.approx(tx_end)
    assert s.span_s() == pytest.approx(tx_end)  # first rx byte started at 0
    assert link.idle and link.next_event() is None


def test_a_transmit_fifo_lets_the_core_go_before_the_last_bytes_leave() -> None:
    link = UartLink(BAUD, tx_fifo=64)
    core = FakeCore(link, reply=bytes(100))
    link.host_wrote(b"\x00\x07", now=0.0)
    link.step(1.0, core.feed)
    assert core.read[1][0] == pytest.approx(BYTE_S + 36 * BYTE_S)


def test_time_scale_stretches_the_wall_clock_not_the_model() -> None:
    fast, slow = UartLink(BAUD), UartLink(BAUD, time_scale=4.0)
    for link, k in ((fast, 1.0), (slow, 4.0)):
        core = FakeCore(link, busy_s=0.002, reply=b"\x05" * 50)
        link.host_wrote(b"\x09" * 20 + b"\x00", now=1.0 * k)
        link.step(1.0 * k + 20.5 * BYTE_S * k, core.feed)
        assert len(core.read) == 20  # wall times scale by k ...
        link.step(10.0 * k, core.feed)
        assert link.take_tx(10.0 * k) == b"\x05" * 50
    assert slow.stats == fast.stats  # ... the modelled figures do not


def test_a_reset_loses_what_was_on_its_way() -> None:
    link = UartLink(BAUD)
    core = FakeCore(link, busy_s=1.0, reply=b"x" * 10)
    link.host_wrote(b"\x00" + b"\x01" * 50, now=0.0)
    link.step(0.1, core.feed)
    assert link.reset_device(0.1) == 50  # the unread bytes
    assert link.idle and link.take_tx(5.0) == b""


def test_mark_starts_a_new_window() -> None:
    link = UartLink(BAUD)
    link.host_wrote(b"\x01" * 5, now=0.0)
    link.step(1.0, FakeCore(link).feed)
    old = link.mark()
    assert old.rx_bytes == 5 and link.stats.rx_bytes == 0 and link.stats.rx_first_start is None


@pytest.mark.parametrize("kwargs", [{"baud": 0}, {"rx_buffer": 0}, {"tx_fifo": -1},
                                    {"time_scale": 0.5}])
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"baud": BAUD} | kwargs
    baud = int(args.pop("baud"))
    with pytest.raises(ValueError):
        UartLink(baud, **args)  # type: ignore[arg-type]
