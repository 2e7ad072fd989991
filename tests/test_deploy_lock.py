"""One flash per device: the port/device lock refuses a second holder and names it, and a
dead holder's leftovers are taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinyship.deploy.lock import DeviceBusy, DeviceLock, LockHolder, default_lock_dir
from tinyship.errors import ExitCode, PolicyError

_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tinyship.deploy.lock import DeviceLock
    lock = DeviceLock(Path(sys.argv[1]), port=sys.argv[2], command="tinyship flash v0007")
    lock.acquire()
    lock.add_device_id(sys.argv[3])
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process (another terminal) holding port /dev/ttyACM0 and board dev-1."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "locks"), "/dev/ttyACM0", "dev-1"],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


def test_second_flash_of_the_same_board_is_refused_naming_the_holder(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    locks = tmp_path / "locks"
    with pytest.raises(DeviceBusy) as e:
        DeviceLock(locks, port="/dev/ttyACM0").acquire()
    msg = str(e.value)
    assert "port /dev/ttyACM0 is busy" in msg
    assert f"pid {holder.pid}" in msg and "tinyship flash v0007" in msg
    assert e.value.holder is not None and e.value.holder.pid == holder.pid
    assert e.value.exit_code == ExitCode.POLICY and isinstance(e.value, PolicyError)

    # Same board through another port name (re-enumerated, RFC 2217): refused by its id,
    # and the port lock taken first is released again.
    other = DeviceLock(locks, port="/dev/ttyACM1", device_id="dev-1")
    with pytest.raises(DeviceBusy, match=f"board dev-1 is busy: held by pid {holder.pid}"):
        other.acquire()
    assert not other.held
    with DeviceLock(locks, port="/dev/ttyACM1"):  # so that port is free again
        pass
    # Known port first, id learned later (from INFO): refused at add_device_id.
    late = DeviceLock(locks, port="/dev/ttyACM2")
    late.acquire()
    with pytest.raises(DeviceBusy, match="board dev-1"):
        late.add_device_id("dev-1")
    late.release()
    # A different board on a different port is not affected.
    with DeviceLock(locks, port="/dev/ttyACM3", device_id="dev-2") as lk:
        assert lk.held and lk.took_over == []


def test_dead_holder_is_reported_and_taken_over(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    locks = tmp_path / "locks"
    lock = DeviceLock(locks, port="/dev/ttyACM0", device_id="dev-1", command="tinyship flash")
    lock.acquire()
    try:
        assert {h.pid for h in lock.took_over} == {holder.pid}
        assert {h.key for h in lock.took_over} == {"port /dev/ttyACM0", "device dev-1"}
        assert lock.describe()["took_over"][0]["pid"] == holder.pid
        # The holder files now name this process.
        named = {LockHolder.read(p) for p in locks.glob("*.holder.json")}
        assert {h.pid for h in named if h is not None} == {os.getpid()}
    finally:
        lock.release()
    assert list(locks.glob("*.holder.json")) == []  # a clean release leaves no holder behind


def test_held_lock_whose_named_holder_is_gone_is_not_broken(tmp_path: Path) -> None:
    """A kernel lock still held although the pid in the holder file is dead (a child it
    started keeps the file open) is refused, saying so, rather than broken."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    first = DeviceLock(tmp_path, port="COM3")
    first.acquire()
    try:
        (holder_file,) = tmp_path.glob("*.holder.json")
        data = json.loads(holder_file.read_text())
        holder_file.write_text(json.dumps({**data, "pid": dead.pid}))
        with pytest.raises(DeviceBusy, match=f"its recorded holder pid {dead.pid}.* is gone"):
            DeviceLock(tmp_path, port="COM3").acquire()
    finally:
        first.release()


def test_missing_holder_file_and_lock_dir_defaults(tmp_path: Path) -> None:
    log = tmp_path / "models" / "deployments.sqlite"
    assert default_lock_dir(log) == tmp_path / "models" / "deploy-locks"
    first = DeviceLock(default_lock_dir(log), device_id="dev/with:odd chars")
    with first:
        (holder_file,) = default_lock_dir(log).glob("device-*.holder.json")
        holder_file.unlink()
        with pytest.raises(DeviceBusy, match="holder unknown"):
            DeviceLock(default_lock_dir(log), device_id="dev/with:odd chars").acquire()
    with pytest.raises(ValueError):
        DeviceLock(tmp_path)
    # Released: the same board can be locked again from this process.
    with DeviceLock(default_lock_dir(log), device_id="dev/with:odd chars") as again:
        assert again.held
    assert not again.held


def test_port_names_of_one_port_share_a_lock(tmp_path: Path) -> None:
    from tinyship.deploy.lock import port_key

    tty = tmp_path / "ttyACM0"
    tty.write_text("")
    link = tmp_path / "by-id-usb-Arduino"
    link.symlink_to(tty)
    assert port_key(str(link)) == port_key(str(tty))
    assert port_key("SOCKET://Rig-7:2217") == port_key("socket://rig-7:2217")
    with DeviceLock(tmp_path / "locks", port=str(tty)), pytest.raises(DeviceBusy):
        DeviceLock(tmp_path / "locks", port=str(link)).acquire()
