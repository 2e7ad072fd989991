"""Project config (`tinyship.toml`): one typed schema, strict about unknown keys and types.

Every section forbids unknown keys so a typo (`epoch = 10`) fails loudly with the key's
dotted name instead of silently training with a default.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tinyship.errors import ConfigError

if TYPE_CHECKING:
    from tinyship.registry import Registry

DEFAULT_CONFIG_NAME = "tinyship.toml"
BUNDLED_PREFIX = "bundled:"
#: `TS_MLPERF_MODEL_DEFAULT` of the firmware core (tests check they agree).
MLPERF_MODEL_DEFAULT = "ad01"
#: What the core accepts as an MLPerf model name: the runner's `m-model-\[([^]]+)]` reads
#: it back whole (firmware/scripts/select_model.py repeats it; tests check all three agree).
MLPERF_MODEL_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def bundled_dataset(name: str) -> Path:
    """Path of a dataset shipped inside the package (`host/tinyship/datasets/`)."""
    return Path(__file__).resolve().parent / "datasets" / name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class ProjectSection(_Strict):
    name: str = "tinyship-model"
    registry: str = "models"
    #: MLflow tracking URI; each training run is mirrored there (tinyship.tracking, needs
    #: the `tracking` extra). A relative `file:` or `sqlite:///` path is relative to this
    #: file. Unset: no tracking, and MLflow is never imported.
    mlflow_tracking_uri: str | None = None
    #: MLflow experiment name; unset: `name`.
    mlflow_experiment: str | None = None


class LongTailSection(_Strict):
    """The slice of the target that matters most and is rare (e.g. end-of-life cells)."""

    side: Literal["upper", "lower"] = "upper"
    quantile: float = Field(0.9, gt=0.0, lt=1.0)
    #: Fixed bounds [lo, hi] instead of a quantile; either end may be omitted.
    range: tuple[float | None, float | None] | None = None


class DataSection(_Strict):
    path: str
    features: list[str] = Field(min_length=1)
    target: str
    task: Literal["regression", "classification"] = "regression"
    #: Rows sharing this column's value (e.g. one battery cell) stay in one split, so the
    #: test set measures generalisation to unseen units rather than to unseen rows.
    group: str | None = None
    #: Declared physical ranges per column: {"mean_temperature_c": [-30, 80]}.
    ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    min_rows: int = Field(100, ge=1)
    max_missing_fraction: float = Field(0.0, ge=0.0, le=1.0)
    max_duplicate_fraction: float = Field(0.01, ge=0.0, le=1.0)
    #: Outliers: |robust z| above `outlier_z` (median/MAD); the share allowed per column.
    outlier_z: float = Field(8.0, gt=0.0)
    max_outlier_fraction: float = Field(0.02, ge=0.0, le=1.0)
    min_class_samples: int = Field(10, ge=1)
    #: A feature with one distinct value carries no information: "fail" stops at the data
    #: checks, "drop" removes it from the model's inputs, "allow" keeps it as an input.
    constant_features: Literal["fail", "drop", "allow"] = "fail"
    long_tail: LongTailSection = LongTailSection()

    @model_validator(mode="after")
    def _target_not_feature(self) -> DataSection:
        if self.target in self.features:
            raise ValueError(f"target column '{self.target}' is also listed in features")
        if self.group is not None and self.group in (*self.features, self.target):
            raise ValueError(f"group column '{self.group}' is also a feature or the target")
        if len(set(self.features)) != len(self.features):
            raise ValueError("features lists a column more than once")
        for col, (lo, hi) in self.ranges.items():
            if lo > hi:
                raise ValueError(f"ranges.{col}: lower bound {lo} is above upper bound {hi}")
        return self


class ModelSection(_Strict):
    type: Literal["mlp", "conv1d"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [32, 16], min_length=1)
    activation: Literal["relu", "relu6", "tanh"] = "relu"
    #: conv1d only: filters and kernel size of the single Conv1D layer.
    conv_filters: int = Field(8, ge=1)
    conv_kernel: int = Field(3, ge=1)


class TrainingSection(_Strict):
    seed: int = 42
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(0.003, gt=0.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    val_fraction: float = Field(0.1, gt=0.0, lt=0.9)
    patience: int = Field(25, ge=1)
    max_seconds: float = Field(600.0, gt=0.0)


class QuantizationSection(_Strict):
    #: Target-runtime profile; see tinyship.profiles. Must match the firmware's TFLM library.
    profile: str = "tflm-arduino-2023"
    representative_samples: int = Field(300, ge=10)
    #: Boot self-test vectors embedded with the model (tinyship.convert.golden picks them:
    #: every output, decision-boundary and extreme rows); the device must reproduce them
    #: bit-exactly. Capped by the test rows and a 16 KiB flash budget.
    golden_vectors: int = Field(32, ge=1, le=128)


class GatesSection(_Strict):
    """Thresholds a model must meet before it may enter the registry.

    Metric gates belong to one task (`REGRESSION_GATES`, `CLASSIFICATION_GATES`); setting
    one for the other task is a config error, so a copied config cannot leave a classifier
    judged by regression gates it silently skips. A task with no metric gate set gets
    `DEFAULT_METRIC_GATES`; every model must also beat a trivial baseline.
    """

    # regression
    min_r2: float | None = None
    max_mae: float | None = None
    max_rmse: float | None = None
    max_long_tail_mae: float | None = None
    #: Physically valid prediction range, e.g. [0, 110] % state of health.
    output_range: tuple[float, float] | None = None
    #: The int8 output step in target units may be at most this share of the float model's
    #: MAE: a coarser step adds rounding error the float model did not have.
    max_output_step_mae_ratio: float = Field(0.5, gt=0.0)
    # classification
    min_accuracy: float | None = None
    min_macro_f1: float | None = None
    # every task
    #: Skill over a trivial baseline (scikit-learn's DummyRegressor / DummyClassifier fitted
    #: on the same training split): 1 - MAE/MAE_baseline for regression, (accuracy -
    #: baseline) / (1 - baseline) for classification. 0 means no better than the baseline.
    min_baseline_skill: float = Field(0.1, le=1.0)
    #: int8 vs float, relative degradation of the main metric (MAE or accuracy).
    max_int8_degradation: float = Field(0.01, ge=0.0)
    #: TFLite interpreter vs TFLite Micro, operator by operator on identical int8 inputs, in
    #: LSB of that operator's output. The two runtimes' requantization rounds differently in
    #: rare ties, so 1 LSB is the norm; a runtime that computes an operator differently
    #: (per-channel weights read per tensor, say) shows many.
    max_parity_lsb: int = Field(1, ge=0)


#: Gate keys that apply to one task only (plus `data.long_tail`, regression only).
REGRESSION_GATES = ("min_r2", "max_mae", "max_rmse", "max_long_tail_mae", "output_range",
                    "max_output_step_mae_ratio")
CLASSIFICATION_GATES = ("min_accuracy", "min_macro_f1")
#: The metric gate a task gets when its config sets none (documented in README.md).
DEFAULT_METRIC_GATES: dict[str, dict[str, float]] = {
    "regression": {"min_r2": 0.5},
    "classification": {"min_macro_f1": 0.5},
}


class BoardSection(_Strict):
    """Budgets of the target board: what the model may use of it."""

    name: str = "nano33ble"
    model_max_bytes: int = Field(256 * 1024, ge=1)
    arena_max_bytes: int = Field(64 * 1024, ge=1)
    #: Device-reported inference latency budget (p99), used by the HIL harness.
    latency_budget_us: int = Field(20_000, ge=1)
    #: Board profile for the virtual board's latency model (cycles per MAC, clock).
    clock_hz: int = Field(64_000_000, ge=1)
    cycles_per_mac: float = Field(4.0, gt=0.0)
    #: MLPerf Tiny benchmark name the firmware reports to `profile%` (`m-model-[...]`); the
    #: MLCommons runner picks its test script by it (ad01, ic01, kws01, vww01). Default ad01:
    #: tinyship models are dense networks on flat int8 vectors, as the anomaly-detection
    #: benchmark is, and its script sends any vector length (`bytes_to_send`).
    mlperf_model: str = Field(MLPERF_MODEL_DEFAULT, pattern=MLPERF_MODEL_PATTERN)


class DeploySection(_Strict):
    """Release policy for what may be sent to a board."""

    #: Ed25519 public key (PEM, from `tinyship registry keygen`) that releases must be
    #: signed with (`tinyship registry sign`); relative to this file. Set, an unsigned or
    #: badly signed version is refused (exit 11) and `registry verify` checks signatures.
    #: Only the public key belongs here: the private key stays off the rig.
    public_key: str | None = None
    #: Deployment log (SQLite), relative to this file; unset: deployments.sqlite in the
    #: registry folder.
    log: str | None = None


class RetrainSection(_Strict):
    """The periodic retrain-and-reflash job (`tinyship retrain`): its triggers, the
    champion-vs-challenger decision and where it deploys. README "Retrain" documents each."""

    #: Schedule trigger: days since production was trained.
    schedule_days: float = Field(30.0, gt=0.0)
    #: Volume trigger: new labelled rows since production's training data.
    min_new_rows: int = Field(1000, ge=1)
    #: Performance trigger: production's error on the new rows above its registered test
    #: error by more than this fraction (MAE, overall or long tail; classification: the
    #: drop of accuracy or macro-F1).
    performance_increase: float = Field(0.10, gt=0.0)
    #: Data drift: PSI bands on the training data's quantile bins.
    psi_warning: float = Field(0.10, gt=0.0)
    psi_alert: float = Field(0.25, gt=0.0)
    #: Features whose PSI alert fires the drift trigger (empty: every feature).
    critical_features: list[str] = Field(default_factory=list)
    #: Prediction drift: two-sample KS on predictions, fired below this p-value.
    prediction_ks_p: float = Field(0.01, gt=0.0, lt=1.0)
    #: Promotion: the challenger must be better with p < alpha, effect size (Cohen's d on
    #: paired per-sample losses) > min_effect, on at least min_samples held-out rows.
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    min_effect: float = Field(0.2, ge=0.0)
    min_samples: int = Field(500, ge=2)
    #: Device latency guard: challenger p99 <= latency_ratio x champion's on the HIL rig.
    latency_ratio: float = Field(1.2, gt=0.0)
    #: Continue training production on old + new data instead of from scratch.
    warm_start: bool = False
    #: HIL rig for the challenger: "virtual" (a virtual board in-process) or a device URL.
    hil_device: str = "virtual"
    #: Fleet file to reflash after a promotion (relative to this file); unset: none.
    fleet: str | None = None
    #: Test vectors each reflashed board runs before its confirm (the deploy smoke check).
    smoke_vectors: int = Field(32, ge=0)
    #: Folder with platformio.ini (relative to this file): the job builds the challenger
    #: for every fleet board's `env` (not for virtual boards) before it is promoted.
    project_dir: str = "."
    #: PlatformIO executable for those builds (unset: pio on PATH, else python -m).
    pio: str | None = None
    #: Folder for the job's reports and the Prometheus textfile (relative to this file).
    reports: str = "reports/retrain"


class Config(_Strict):
    project: ProjectSection = ProjectSection()
    data: DataSection
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    quantization: QuantizationSection = QuantizationSection()
    gates: GatesSection = GatesSection()
    board: BoardSection = BoardSection()
    deploy: DeploySection = DeploySection()
    retrain: RetrainSection = RetrainSection()

    #: Directory the config was read from; relative paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def resolve(self, path: str | Path) -> Path:
        """Resolve a config path: `bundled:NAME` is a dataset shipped in the package,
        a relative path is relative to the config file's folder."""
        text = str(path)
        if text.startswith(BUNDLED_PREFIX):
            return bundled_dataset(text[len(BUNDLED_PREFIX) :])
        p = Path(text)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def dataset_path(self) -> Path:
        return self.resolve(self.data.path)

    @property
    def registry_path(self) -> Path:
        return self.resolve(self.project.registry)

    @property
    def public_key_path(self) -> Path | None:
        """`deploy.public_key` resolved, or None when releases need no signature."""
        key = self.deploy.public_key
        return None if key is None else self.resolve(key)

    @property
    def deploy_log_path(self) -> Path | None:
        """`deploy.log` resolved, or None for the default beside the registry."""
        log = self.deploy.log
        return None if log is None else self.resolve(log)

    def to_dict(self) -> dict[str, object]:
        """The config as plain data, for manifests (paths as written, not resolved)."""
        return self.model_dump(mode="json", exclude={"base_dir"})


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        kind = e["type"]
        if kind == "extra_forbidden":
            lines.append(f"  unknown key '{key}'")
        elif kind == "missing":
            lines.append(f"  missing required key '{key}'")
        else:
            lines.append(f"  key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _check_task_keys(cfg: Config, source: str) -> None:
    """Keys written for another task are an error naming them (they would be ignored)."""
    task = cfg.data.task
    other = CLASSIFICATION_GATES if task == "regression" else REGRESSION_GATES
    wrong = [f"gates.{k}" for k in other
             if k in cfg.gates.model_fields_set and getattr(cfg.gates, k) is not None]
    if task == "classification" and "long_tail" in cfg.data.model_fields_set:
        wrong.append("data.long_tail")
    if wrong:
        keys = ", ".join(f"'{k}'" for k in wrong)
        own = ", ".join(f"gates.{k}" for k in (
            REGRESSION_GATES if task == "regression" else CLASSIFICATION_GATES))
        raise ConfigError(
            f"{source}: key(s) {keys} do not apply to data.task = \"{task}\"",
            hint=f"remove them; gates for {task} are {own}",
        )


def parse_config(data: dict[str, object], *, base_dir: Path, source: str = "config") -> Config:
    """Validate a config mapping; errors name each offending key."""
    from tinyship import profiles

    try:
        cfg = Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e)) from None
    _check_task_keys(cfg, source)
    if cfg.quantization.profile not in profiles.PROFILES:
        known = ", ".join(sorted(profiles.PROFILES))
        raise ConfigError(
            f"{source}: key 'quantization.profile': unknown profile "
            f"'{cfg.quantization.profile}' (known: {known})"
        )
    return cfg


def with_overrides(cfg: Config, source: str, **sections: dict[str, object]) -> Config:
    """`cfg` with some keys of its sections replaced (command-line options), validated again
    by `parse_config` so an override obeys every rule a key written in the file does."""
    data = cfg.model_dump(exclude={"base_dir"}, exclude_unset=True)
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data, base_dir=cfg.base_dir, source=source)


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a `tinyship.toml`; default is the one in the current directory."""
    p = Path(path) if path is not None else Path(DEFAULT_CONFIG_NAME)
    if not p.is_file():
        raise ConfigError(
            f"config file not found: {p}",
            hint="run from the project folder or pass --config PATH",
        )
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return parse_config(raw, base_dir=p.resolve().parent, source=str(p))


def project_config(config_path: Path | None = None) -> Config | None:
    """The project config by the rule every command uses: the explicit one, else
    ./tinyship.toml when present; None without either."""
    if config_path is None and not Path(DEFAULT_CONFIG_NAME).is_file():
        return None
    return load_config(config_path)


def project_context(
    config_path: Path | None = None, registry_dir: Path | None = None
) -> tuple[Registry, BoardSection]:
    """The (Registry, BoardSection) a device or registry command works on, one rule for all:
    an explicit config is loaded; else ./tinyship.toml if present; `registry_dir` overrides
    the config's registry; with neither, ./models and the default board."""
    from tinyship.registry import Registry

    if config_path is not None or Path(DEFAULT_CONFIG_NAME).is_file():
        cfg = load_config(config_path)
        return Registry(registry_dir or cfg.registry_path), cfg.board
    return Registry(registry_dir or Path("models")), BoardSection()
