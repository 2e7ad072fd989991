"""`tinyship device` technician commands against the virtual board."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tinyship.cli import cli, main
from tinyship.config import Config
from tinyship.device.virtual import Faults, VirtualBoard
from tinyship.errors import ExitCode
from tinyship.registry import Registry


def test_info_reports_version_and_matches_registry(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    cfg, version = trained_registry
    sha = Registry(cfg.registry_path).manifest(version)["model"]["sha256"]
    with VirtualBoard(cfg.registry_path, version, baud=0, state_dir=tmp_path / "s") as vb:
        res = CliRunner().invoke(cli, ["device", "info", "--device", vb.url, "--json",
                                       "--expect", version, "--registry",
                                       str(cfg.registry_path)])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["device"]["model_version"] == version
        assert out["device"]["model_sha256"] == sha
        assert out["ok"] is True
        res = CliRunner().invoke(cli, ["device", "info", "--device", vb.url, "--no-registry"])
        assert f"model_version      {version}" in res.output
        assert "self_test          pass" in res.output
        assert "link               stream" in res.output  # unpaced: no byte rate
        assert out["device"]["link"] == {"kind": 3, "baud": 0, "rx_window": 0,
                                         "kind_name": "stream"}


def test_info_expect_mismatch_exits_validation(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    cfg, version = trained_registry
    with VirtualBoard(cfg.registry_path, version, baud=0, faults=Faults(wrong_hash=True)) as vb:
        try:
            main(["device", "info", "--device", vb.url, "--expect", version,
                  "--registry", str(cfg.registry_path)])
        except SystemExit as e:
            assert e.code == ExitCode.VALIDATION
        else:
            raise AssertionError("expected a non-zero exit")


def test_stats_and_ping(trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    with VirtualBoard(cfg.registry_path, version, baud=0) as vb:
        res = CliRunner().invoke(cli, ["device", "ping", "--device", vb.url, "--count", "3",
                                       "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["count"] == 3
        # Opening the port resets the virtual board (as most Arduinos), so counters start at 0.
        res = CliRunner().invoke(cli, ["device", "stats", "--device", vb.url, "--json",
                                       "--reset"])
        assert res.exit_code == 0, res.output
        stats = json.loads(res.stdout)
        assert stats["inference_count"] == 0
        assert set(stats) >= {"latency_min_us", "latency_mean_us", "latency_max_us", "errors"}
        assert vb.stats.boots >= 3  # power-on plus one reset per connection


def test_missing_port_is_a_device_error(tmp_path: Path) -> None:
    try:
        main(["device", "info", "--device", str(tmp_path / "ttyNOPE")])
    except SystemExit as e:
        assert e.code == ExitCode.DEVICE
    else:
        raise AssertionError("expected a non-zero exit")
