"""The virtual board's NOR flash simulator: strict semantics, counting, modelled time,
power cuts before and inside every operation (torn writes), and persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyship.device.virtual.nor import (
    GEOMETRIES,
    T_ERASE_SECTOR_S,
    T_WRITE_WORD_S,
    NorError,
    NorFlash,
    NorGeometry,
    PowerCut,
)

SMALL = NorGeometry("test", 4 * 4096, 4096, 4)


def _sequence(f: NorFlash) -> None:
    """A small install: erase two sectors, program body words, then a commit word last."""
    f.erase(0, 2 * 4096)
    f.program(0, b"\x11\x22\x33\x44" * 4)
    f.program(4096, b"\x55" * 8)
    f.program(8188, b"\x01\xff\xff\xff")


def test_geometries_match_the_boards() -> None:
    assert (GEOMETRIES["nano33ble"].sector_size, GEOMETRIES["nano33ble"].program_unit) == (
        4096, 4)
    assert GEOMETRIES["nanorp2040connect"].program_unit == 256
    assert GEOMETRIES["esp32s3"].sector_size == 4096
    with pytest.raises(ValueError, match="whole number of sectors"):
        NorGeometry("bad", 5000, 4096, 4)
    with pytest.raises(ValueError, match="multiple of the program unit"):
        NorGeometry("bad", 4096, 4096, 3)


def test_new_flash_is_erased_and_erase_sets_ff() -> None:
    f = NorFlash(SMALL)
    assert f.read(0, SMALL.size) == b"\xff" * SMALL.size
    f.program(0, b"\x00" * 8)
    f.erase(0)
    assert f.read(0, 8) == b"\xff" * 8


def test_strict_refuses_program_to_unerased_bytes_even_when_only_clearing() -> None:
    f = NorFlash(SMALL)
    f.program(0, b"\xf0\xff\xff\xff")
    with pytest.raises(NorError, match="not erased"):
        f.program(0, b"\x00\xff\xff\xff")
    assert f.read(0, 4) == b"\xf0\xff\xff\xff"
    assert f.stats.programs == 1  # the refused program is not an operation


def test_relaxed_allows_clearing_bits_but_never_setting() -> None:
    f = NorFlash(SMALL, strict=False)
    f.program(0, b"\xf0\xff\xff\xff")
    f.program(0, b"\x30\xff\xff\xff")
    assert f.read(0, 1) == b"\x30"
    with pytest.raises(NorError, match="set a 0 bit to 1"):
        f.program(0, b"\x31\xff\xff\xff")
    assert f.read(0, 1) == b"\x30"


@pytest.mark.parametrize(("addr", "data"), [(2, b"\x00" * 4), (0, b"\x00" * 3), (0, b"")])
def test_program_alignment(addr: int, data: bytes) -> None:
    with pytest.raises(NorError, match="aligned"):
        NorFlash(SMALL).program(addr, data)


def test_rp2040_programs_whole_256_byte_pages() -> None:
    f = NorFlash(GEOMETRIES["nanorp2040connect"].with_size(8192))
    with pytest.raises(NorError):
        f.program(0, b"\x00" * 4)
    f.program(256, b"\x00" * 256)
    assert f.read(255, 2) == b"\xff\x00"


def test_erase_alignment_and_range() -> None:
    f = NorFlash(SMALL)
    with pytest.raises(NorError, match="sectors"):
        f.erase(100)
    with pytest.raises(NorError, match="sectors"):
        f.erase(0, 100)
    with pytest.raises(NorError, match="outside"):
        f.erase(SMALL.size)
    with pytest.raises(NorError, match="outside"):
        f.program(SMALL.size - 4, b"\x00" * 8)
    with pytest.raises(NorError, match="outside"):
        f.read(SMALL.size, 1)


def test_counting_and_modelled_time_use_the_nrf52840_figures() -> None:
    ticks: list[float] = []
    f = NorFlash(SMALL, clock=ticks.append)
    _sequence(f)
    assert (f.stats.erases, f.stats.programs, f.stats.ops) == (2, 3, 5)
    assert f.stats.program_bytes == 16 + 8 + 4
    expected = 2 * T_ERASE_SECTOR_S + (4 + 2 + 1) * T_WRITE_WORD_S
    assert f.stats.modelled_s == pytest.approx(expected)
    assert sum(ticks) == pytest.approx(expected)


def _final_image() -> bytes:
    f = NorFlash(SMALL)
    _sequence(f)
    return f.image


@pytest.mark.parametrize("cut", range(1, 6))
def test_cut_before_each_operation_leaves_exactly_the_earlier_ones(cut: int) -> None:
    f = NorFlash(SMALL)
    f.program(8 * 1024 + 4096, b"\x00" * 4)  # a byte outside the install, as old content
    f.power_on(cut_at=cut)
    with pytest.raises(PowerCut) as e:
        _sequence(f)
    assert (e.value.op, e.value.torn) == (cut, False)
    assert f.stats.ops == cut - 1
    # Replaying the prefix on a fresh flash gives the same image: nothing of op N happened.
    g = NorFlash(SMALL)
    g.program(8 * 1024 + 4096, b"\x00" * 4)
    g.power_on(cut_at=cut)
    with pytest.raises(PowerCut):
        _sequence(g)
    assert f.image == g.image
    with pytest.raises(NorError, match="power_on"):
        f.erase(0)
    f.power_on()
    _sequence(f)  # a full retry after power-on completes
    assert f.read(0, 16) == b"\x11\x22\x33\x44" * 4


def test_cut_beyond_the_last_operation_never_fires() -> None:
    f = NorFlash(SMALL, cut_at=6)
    _sequence(f)
    assert f.image == _final_image()


@pytest.mark.parametrize("seed", range(20))
def test_torn_program_writes_a_prefix_then_part_of_one_unit(seed: int) -> None:
    f = NorFlash(SMALL, cut_at=2, cut_mode="torn", seed=seed)
    f.erase(0)
    data = bytes(range(16))
    with pytest.raises(PowerCut) as e:
        f.program(0, data)
    assert e.value.torn and e.value.kind == "program"
    got = f.read(0, 16)
    # Every byte is between erased and programmed: only bits the program clears may clear.
    assert all(g & d == d and g | 0xFF == 0xFF for g, d in zip(got, data, strict=True))
    units = [got[i:i + 4] for i in range(0, 16, 4)]
    done = [u == data[i * 4:i * 4 + 4] for i, u in enumerate(units)]
    first_partial = done.index(False) if False in done else 4
    assert all(done[:first_partial])
    assert all(u == b"\xff" * 4 for u in units[first_partial + 1:])


def test_torn_program_is_seeded_and_varies_across_seeds() -> None:
    def torn(seed: int) -> bytes:
        f = NorFlash(SMALL, cut_at=2, cut_mode="torn", seed=seed)
        f.erase(0)
        with pytest.raises(PowerCut):
            f.program(0, b"\x00" * 64)
        return f.read(0, 64)

    assert torn(3) == torn(3)
    assert len({torn(s) for s in range(10)}) > 1
    assert all(torn(s) != b"\x00" * 64 for s in range(10))  # never a complete write


def test_torn_unit_cannot_be_reprogrammed_under_the_strict_rule() -> None:
    """Why write-once flags must treat a torn value as its own state (see SLOTS.md)."""
    f = NorFlash(SMALL, seed=1)
    for _ in range(20):  # a torn one-unit program may, by chance, change nothing
        f.power_on(cut_at=1, cut_mode="torn")
        with pytest.raises(PowerCut):
            f.program(0, b"\x01\xff\xff\xff")
        if f.read(0, 4) != b"\xff" * 4:
            break
    got = f.read(0, 4)
    assert got not in (b"\xff" * 4, b"\x01\xff\xff\xff")
    f.power_on()
    with pytest.raises(NorError, match="not erased"):
        f.program(0, b"\x01\xff\xff\xff")


def test_torn_erase_leaves_random_bits_set() -> None:
    f = NorFlash(SMALL, seed=7)
    f.program(0, b"\x5a" * 4096)
    f.power_on(cut_at=1, cut_mode="torn")
    with pytest.raises(PowerCut) as e:
        f.erase(0)
    assert e.value.kind == "erase" and e.value.torn
    got = f.read(0, 4096)
    assert got != b"\x5a" * 4096 and got != b"\xff" * 4096
    assert all(g & 0x5A == 0x5A for g in got)  # an erase only ever sets bits
    assert f.read(4096, 4) == b"\xff" * 4  # the next sector is untouched


def test_random_cuts_are_seeded() -> None:
    def run(seed: int) -> tuple[int, bool, bytes]:
        f = NorFlash(SMALL, cut_probability=0.3, cut_mode="random", seed=seed)
        try:
            for _ in range(50):
                _sequence(f)
                f.erase(0, SMALL.size)
        except PowerCut as e:
            return e.op, e.torn, f.image
        return 0, False, f.image

    assert run(5) == run(5)
    outcomes = {run(s)[:2] for s in range(30)}
    assert len({op for op, _ in outcomes}) > 1
    assert {torn for _, torn in outcomes} == {True, False}
    assert NorFlash(SMALL, cut_probability=0.0).cut_probability == 0.0
    with pytest.raises(ValueError):
        NorFlash(SMALL, cut_probability=1.5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    f = NorFlash(SMALL)
    _sequence(f)
    path = tmp_path / "state" / "flash.bin"
    f.save(path)
    assert path.read_bytes() == f.image
    g = NorFlash.load(path, SMALL)
    assert g.image == f.image and g.stats.ops == 0
    with pytest.raises(NorError, match="not erased"):  # content, not just bytes, persisted
        g.program(0, b"\xff" * 4)
    assert NorFlash.load(tmp_path / "missing.bin", SMALL).image == b"\xff" * SMALL.size
    with pytest.raises(NorError, match="expected"):
        NorFlash.load(path, SMALL.with_size(4096))
    assert [p.name for p in path.parent.iterdir()] == ["flash.bin"]  # no temp file left
