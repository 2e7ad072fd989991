"""HIL acceptance suite: `pytest hil --device URL [--model VERSION] [--registry DIR]`.

Without `--device` a virtual board is started in-process on the registry's production (else
latest) version; with no registry version at all the suite skips with a clear message.
Every test reads one session-wide `Report` from the same harness the `tinyship hil` CLI uses
(`tinyship.hil.validate`), so the suite and the CLI cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tinyship.device.client import DeviceClient
from tinyship.hil import Report, validate


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("tinyship-hil")
    g.addoption("--device", default=None, help="Serial port or URL of the board "
                "[default: start a virtual board].")
    g.addoption("--model", default=None, help="Registry version or alias [default: production, "
                "else latest].")
    g.addoption("--registry", default=None, help="Registry folder [default: the config's, "
                "else ./models].")
    g.addoption("--hil-config", default=None, help="Project config (registry, [board] budget).")
    g.addoption("--baud", type=int, default=None,
                help="Line rate [115200; 0 = unpaced]. Given for firmware that does not report "
                "its link, it means a physical UART (link utilisation is computed).")
    g.addoption("--tolerance-lsb", type=int, default=0, help="Allowed int8 difference.")
    g.addoption("--limit", type=int, default=None, help="Validate only the first N vectors.")
    g.addoption("--hil-timeout", type=float, default=1.0, help="Base reply timeout (s).")


@dataclass
class Target:
    url: str
    registry: Path
    version: str
    board: Any
    baud: int
    virtual: bool
    #: --baud was given: a physical UART at that rate (when the device does not say).
    baud_is_physical: bool = False


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Iterator[Target]:
    from tinyship.config import project_context
    from tinyship.errors import RegistryError

    opt = pytestconfig.getoption
    registry_dir, cfg_path = opt("--registry"), opt("--hil-config")
    reg, board = project_context(Path(cfg_path) if cfg_path else None,
                                 Path(registry_dir) if registry_dir else None)
    registry = reg.root
    try:
        version = reg.resolve(opt("--model"))
    except RegistryError as e:
        pytest.skip(f"no model to validate: {e} (train one with `tinyship train`, or pass "
                    "--registry/--model)")
    given = opt("--baud")
    baud = 115200 if given is None else int(given)
    if opt("--device"):
        yield Target(opt("--device"), registry, version, board, baud, False,
                     baud_is_physical=given is not None)
        return
    from tinyship.device.virtual import VirtualBoard

    with VirtualBoard(registry, version, board=board, baud=baud) as vb:
        yield Target(vb.url, registry, version, board, baud, True)


@pytest.fixture(scope="session")
def client(target: Target, pytestconfig: pytest.Config) -> Iterator[DeviceClient]:
    c = DeviceClient.open(target.url, baud=target.baud or 115200,
                          reply_timeout_s=pytestconfig.getoption("--hil-timeout"))
    with c:
        yield c


@pytest.fixture(scope="session")
def report(target: Target, client: DeviceClient, pytestconfig: pytest.Config) -> Report:
    """The validation report, computed once per session on the shared client."""
    return validate(target.url, target.registry, target.version, board_cfg=target.board,
                    tolerance_lsb=pytestconfig.getoption("--tolerance-lsb"), baud=target.baud,
                    baud_is_physical=target.baud_is_physical,
                    limit=pytestconfig.getoption("--limit"), client=client,
                    robustness_probe=False)
