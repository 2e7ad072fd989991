"""The config loader: strict about keys and types, errors name the dotted key, and paths
resolve against the config file's folder (or inside the package for `bundled:`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyship.config import (
    Config,
    bundled_dataset,
    load_config,
    parse_config,
    with_overrides,
)
from tinyship.errors import ConfigError, ExitCode

MINIMAL = """
[data]
path = "data.csv"
features = ["a", "b"]
target = "y"
"""


def _write(tmp_path: Path, text: str, name: str = "tinyship.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    assert exc.value.exit_code == ExitCode.CONFIG
    return str(exc.value)


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL))
    assert isinstance(cfg, Config)
    assert cfg.data.features == ["a", "b"]
    assert cfg.data.task == "regression"
    assert cfg.training.epochs == 300
    assert cfg.quantization.profile == "tflm-arduino-2023"
    assert "base_dir" not in cfg.to_dict()


def test_unknown_key_named_with_dotted_path(tmp_path: Path) -> None:
    text = _error(tmp_path, MINIMAL + "\n[training]\nepoch = 10\n")
    assert "unknown key 'training.epoch'" in text
    text = _error(tmp_path, MINIMAL + "\n[data.long_tail]\nsides = 'lower'\n")
    assert "unknown key 'data.long_tail.sides'" in text
    text = _error(tmp_path, MINIMAL + "\n[trainig]\nepochs = 10\n")
    assert "unknown key 'trainig'" in text


def test_wrong_type_named(tmp_path: Path) -> None:
    text = _error(tmp_path, MINIMAL + '\n[training]\nepochs = "many"\n')
    assert "key 'training.epochs'" in text
    assert "'many'" in text
    text = _error(tmp_path, MINIMAL + "\n[training]\nlearning_rate = -1.0\n")
    assert "key 'training.learning_rate'" in text


def test_missing_required_key(tmp_path: Path) -> None:
    assert "missing required key 'data'" in _error(tmp_path, "[training]\nepochs = 3\n")
    text = _error(tmp_path, '[data]\npath = "d.csv"\nfeatures = ["a"]\n')
    assert "missing required key 'data.target'" in text


def test_unknown_profile(tmp_path: Path) -> None:
    text = _error(tmp_path, MINIMAL + '\n[quantization]\nprofile = "tflm-1999"\n')
    assert "key 'quantization.profile'" in text
    assert "unknown profile 'tflm-1999'" in text
    assert "tflm-arduino-2023" in text  # lists the known ones


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL + "[quantization]\ngolden_vectors = 6\n"))
    new = with_overrides(cfg, "--profile", quantization={"profile": "tflm-current"})
    assert new.quantization.profile == "tflm-current"
    assert new.quantization.golden_vectors == 6  # the rest of the section is kept
    assert new.base_dir == cfg.base_dir and new.data == cfg.data
    with pytest.raises(ConfigError, match=r"--profile: key 'quantization.profile'.*tflm-1999"):
        with_overrides(cfg, "--profile", quantization={"profile": "tflm-1999"})
    with pytest.raises(ConfigError, match=r"unknown key 'quantization.scheme'"):
        with_overrides(cfg, "--scheme", quantization={"scheme": "x"})


def test_target_listed_as_feature(tmp_path: Path) -> None:
    text = _error(tmp_path, '[data]\npath = "d.csv"\nfeatures = ["a", "y"]\ntarget = "y"\n')
    assert "target column 'y' is also listed in features" in text


def test_constant_features_policy(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, MINIMAL)).data.constant_features == "fail"
    cfg = load_config(_write(tmp_path, MINIMAL + 'constant_features = "drop"\n'))
    assert cfg.data.constant_features == "drop"
    assert cfg.to_dict()["data"]["constant_features"] == "drop"  # type: ignore[index]
    text = _error(tmp_path, MINIMAL + 'constant_features = "ignore"\n')
    assert "key 'data.constant_features'" in text and "'ignore'" in text


def test_inverted_range_rejected(tmp_path: Path) -> None:
    text = _error(tmp_path, MINIMAL + "ranges = { a = [5, 1] }\n")
    assert "ranges.a" in text


def test_invalid_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, "[data\npath = ")
    with pytest.raises(ConfigError, match="not valid TOML") as exc:
        load_config(path)
    assert str(path) in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found") as exc:
        load_config(tmp_path / "nope.toml")
    assert exc.value.hint is not None and "--config" in exc.value.hint


def test_default_file_is_in_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"tinyship\.toml"):
        load_config()
    _write(tmp_path, MINIMAL)
    assert load_config().base_dir == tmp_path.resolve()


def test_bundled_path_resolution(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL.replace("data.csv", "bundled:battery_soh.csv")))
    assert cfg.dataset_path == bundled_dataset("battery_soh.csv")
    assert cfg.dataset_path.is_file()
    assert cfg.to_dict()["data"]["path"] == "bundled:battery_soh.csv"  # type: ignore[index]


def test_relative_paths_resolve_against_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = MINIMAL.replace("data.csv", "data/d.csv") + '\n[project]\nregistry = "reg"\n'
    path = _write(project, text)
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "project" / "tinyship.toml")
    assert cfg.dataset_path.resolve() == (project / "data" / "d.csv").resolve()
    assert cfg.registry_path.resolve() == (project / "reg").resolve()
    absolute = tmp_path / "abs.csv"
    cfg2 = load_config(_write(project, MINIMAL.replace("data.csv", str(absolute))))
    assert cfg2.dataset_path == absolute
    assert path.is_file()


def test_parse_config_names_source() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"data": {"path": "x"}}, base_dir=Path("."), source="inline")
    text = str(exc.value)
    assert text.startswith("inline: invalid config")
    assert "missing required key 'data.features'" in text
    assert "missing required key 'data.target'" in text
