"""`tinyship flash` and `tinyship rollback`: one registry version onto one board, verified,
with automatic rollback, a lock and a deployment-log row.

API (the CLI and `tinyship.deploy.fleet` call these; they never raise for a board's
failure: the outcome says what happened and carries the error for the exit code):

    ctx = DeployContext.from_project(config_path, registry_dir)
    outcome = flash_device(FlashRequest(url, "v0004"), ctx)
    outcome = rollback_device(RollbackRequest(url, to=None), ctx)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tinyship.errors import TinyshipError

if TYPE_CHECKING:
    from tinyship.config import Config

PathChoice = Literal["auto", "slot", "image"]
#: progress(step, done, total): a step name and, for transfers, bytes done of total.
ProgressFn = Callable[[str, int, int], None]


@dataclass
class FlashRequest:
    """What to put on which board."""

    url: str
    model: str
    env: str | None = None          # PlatformIO env for a full image (default: the board's)
    label: str | None = None        # a fleet entry's label, for tables and logs
    baud: int = 115_200
    allow_downgrade: bool = False
    path: PathChoice = "auto"
    smoke_vectors: int = 32
    tolerance_lsb: int = 0
    reboot_timeout_s: float = 30.0
    rollback: bool = True           # False: leave a failed trial for inspection (exit 9)


@dataclass
class RollbackRequest:
    url: str
    to: str | None = None           # a registry version; None: the previous known-good one
    env: str | None = None
    label: str | None = None
    baud: int = 115_200
    smoke_vectors: int = 32
    tolerance_lsb: int = 0
    reboot_timeout_s: float = 30.0


@dataclass
class BoardNow:
    """What the board reported last (None: it did not answer)."""

    reachable: bool
    firmware_version: str | None = None
    model_version: str | None = None
    model_sha256: str | None = None
    running: str | None = None      # "factory" / "slot A (trial)" ...
    self_test: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FlashOutcome:
    """The result of one flash or rollback; `error` is None when it succeeded."""

    command: str                     # "flash" / "rollback"
    url: str
    label: str | None
    device_id: str | None
    result: str                      # ok / rolled_back / rollback_failed / refused / failed
    from_version: str | None
    to_version: str | None
    path: str | None                 # slot / image / None (nothing sent)
    failed_step: str | None = None
    message: str | None = None
    rollback: str | None = None      # what the rollback did, when one ran
    board: BoardNow | None = None
    attempt_id: int | None = None
    steps: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    error: TinyshipError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else int(self.error.exit_code)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("error", "board")}
        d["ok"] = self.ok
        d["exit_code"] = self.exit_code
        d["board"] = self.board.to_dict() if self.board is not None else None
        d["error"] = None if self.error is None else {
            "type": type(self.error).__name__, "message": str(self.error),
            "hint": self.error.hint}
        return d


@dataclass
class DeployContext:
    """Where versions, the log and the locks are, and the release policy."""

    registry_root: Path
    log_path: Path
    lock_dir: Path
    public_key: Path | None = None
    latency_budget_us: int | None = None
    tool_paths: dict[str, str | Path] | None = None
    progress: ProgressFn | None = None

    @classmethod
    def from_project(cls, config_path: Path | None = None, registry_dir: Path | None = None,
                     *, log_path: Path | None = None) -> DeployContext:
        """The project's registry, deployment log (`--log`, else `deploy.log`, else beside
        the registry), lock folder beside the log, release key and latency budget."""
        from tinyship.config import project_config, project_context
        from tinyship.signing import public_key_from_config

        reg, board = project_context(config_path, registry_dir)
        cfg = project_config(config_path)
        if log_path is None and cfg is not None:
            log_path = cfg.deploy_log_path
        return cls._make(reg.root, log_path, public_key_from_config(config_path),
                         board.latency_budget_us)

    @classmethod
    def from_config(cls, cfg: Config) -> DeployContext:
        """The same for a loaded config (the retrain job)."""
        return cls._make(cfg.registry_path, cfg.deploy_log_path, cfg.public_key_path,
                         cfg.board.latency_budget_us)

    @classmethod
    def _make(cls, registry_root: Path, log_path: Path | None, public_key: Path | None,
              latency_budget_us: int) -> DeployContext:
        from tinyship.deploy.lock import default_lock_dir
        from tinyship.deploy.log import default_log_path

        log_path = log_path or default_log_path(registry_root)
        return cls(registry_root=registry_root, log_path=log_path,
                   lock_dir=default_lock_dir(log_path), public_key=public_key,
                   latency_budget_us=latency_budget_us)


#: The PlatformIO env of a board reported as `virtual-<board>`: the virtual board's own
#: bootloader takes the full image (tinyship.deploy.virtual_upload).
VIRTUAL_ENV = "virtual"
#: The least a rollback waits for a board to come back (or `reboot_timeout_s`, if longer).
ROLLBACK_WAIT_S = 10.0


class StepFailed(Exception):
    """Internal: a step of a flash failed; carries the step's name and the error."""

    def __init__(self, step: str, error: TinyshipError) -> None:
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error


# --- entry points ------------------------------------------------------------------------


def flash_device(req: FlashRequest, ctx: DeployContext) -> FlashOutcome:
    """Install registry version `req.model` on the board at `req.url`: policy checks, the
    slot update or a full image, reboot, verify, smoke check, confirm; any failure rolls
    back (see the module docstring). Never raises for a board's failure."""
    return _Deploy(ctx, "flash", req.url, req.label, req.baud, req.reboot_timeout_s,
                   req.smoke_vectors, req.tolerance_lsb).flash(req)


def rollback_device(req: RollbackRequest, ctx: DeployContext) -> FlashOutcome:
    """Put back the board's previous known-good model (the other slot when it holds one:
    instant; else the version the deployment log names, or `req.to`), verified."""
    return _Deploy(ctx, "rollback", req.url, req.label, req.baud, req.reboot_timeout_s,
                   req.smoke_vectors, req.tolerance_lsb).rollback(req)


# --- the work ----------------------------------------------------------------------------


@dataclass
class _Target:
    """The version to install and how."""

    version: str
    sha256: str
    path: str                      # slot / image
    env: str | None = None
    slot_image: bytes | None = None
    slots: Any = None              # the SLOT_INFO read when choosing (slot path)
    upload: Any = None             # an UploadPlan (real board) or the virtual image bytes
    firmware_version: str | None = None


@dataclass
class _From:
    """What the board ran before the attempt."""

    version: str | None
    sha256: str | None
    firmware_version: str | None
    env: str | None


class _Deploy:
    """One flash or rollback of one board: lock, connection, log rows, steps, rollback."""

    def __init__(self, ctx: DeployContext, command: str, url: str, label: str | None,
                 baud: int, reboot_timeout_s: float, smoke_vectors: int,
                 tolerance_lsb: int) -> None:
        from tinyship.deploy.log import DeploymentLog
        from tinyship.registry import Registry

        self.ctx = ctx
        self.command = command
        self.url = url
        self.baud = baud
        self.reboot_timeout_s = reboot_timeout_s
        #: A rollback waits longer: giving up there leaves the board unverified.
        self.rollback_timeout_s = max(reboot_timeout_s, ROLLBACK_WAIT_S)
        self.smoke_vectors = smoke_vectors
        self.tolerance_lsb = tolerance_lsb
        self.reg = Registry(ctx.registry_root)
        self.log = DeploymentLog(ctx.log_path)
        self.out = FlashOutcome(command=command, url=url, label=label, device_id=None,
                                result="failed", from_version=None, to_version=None,
                                path=None)
        self.client: Any = None    # DeviceClient
        self.info: Any = None      # the last P.DeviceInfo read
        self.attempt: int | None = None
        self._finished = False
        self._lock: Any = None

    # --- flash ----------------------------------------------------------------------------

    def flash(self, req: FlashRequest) -> FlashOutcome:
        try:
            version = self.reg.resolve(req.model)
            self.out.to_version = version
            self._release_policy(version)
        except TinyshipError as e:
            return self._refused("policy", e)
        return self._locked(lambda: self._flash_connected(req, version))

    def _flash_connected(self, req: FlashRequest, version: str) -> FlashOutcome:
        from tinyship.device.report import version_number
        from tinyship.errors import PolicyError

        info = self.info
        before = self._from(info, req.env)
        have, want = version_number(info.model_version), version_number(version)
        if (not req.allow_downgrade and have is not None and want is not None
                and want < have):
            return self._refused("policy", PolicyError(
                f"{version} is older than the {info.model_version} the board runs: a "
                "downgrade goes through `tinyship rollback` (or --allow-downgrade)"))
        sha = self._sha(version)
        if self._runs(info, version, sha) and not _board_unhealthy(info):
            if not _trial(info):
                return self._already(version)
            return self._resume_trial(version, sha, before, rollback=req.rollback)
        try:
            target = self._choose(version, req.path, req.env or before.env)
        except TinyshipError as e:
            return self._refused("path", e)
        return self._install(target, before, rollback=req.rollback)

    def _resume_trial(self, version: str, sha: str, before: _From, *, rollback: bool
                      ) -> FlashOutcome:
        """The version already runs as a trial (an attempt cut short before its confirm):
        check it and confirm it; a failure reverts it to what the board falls back to."""
        gives = self._revert_gives(self.info)
        assert gives is not None
        before = _From(gives[0], gives[1], before.firmware_version, before.env)
        t = _Target(version, sha, "slot", before.env,
                    firmware_version=self.info.firmware_version)
        self.out.path = "slot"
        self.out.from_version = before.version
        self.out.details["resumed_trial"] = _running_name(self.info)
        self._start(before, version, t.firmware_version, "slot")
        try:
            self._check_and_confirm(t, self.info.running.slot)
        except StepFailed as f:
            return self._recover(f, t, before, rollback=rollback)
        return self._finish("ok", None, None, board=self._board_now())

    # --- rollback -------------------------------------------------------------------------

    def rollback(self, req: RollbackRequest) -> FlashOutcome:
        return self._locked(lambda: self._rollback_connected(req))

    def _rollback_connected(self, req: RollbackRequest) -> FlashOutcome:
        from tinyship.errors import PolicyError

        info = self.info
        before = self._from(info, req.env)
        try:
            want = self.reg.resolve(req.to) if req.to is not None else None
        except TinyshipError as e:
            return self._refused("policy", e)
        # Instant: revoke the running slot when what the board falls back to is wanted (a
        # registry version with its SHA-256, or the factory model) and was not rolled
        # away from before.
        left = self._rolled_away_from()
        revert_to = self._revert_gives(info)
        if revert_to is not None and (want is None or revert_to[0] == want) and (
                revert_to[0] is None or (revert_to[0] not in left
                                         and self._registry_match(*revert_to))):
            self.out.to_version = revert_to[0]
            return self._revert_rollback(before, revert_to)
        if want is None:
            want = self._previous_good(info, left)
            if want is None:
                return self._refused("policy", PolicyError(
                    f"no previous known-good version for device {self.out.device_id}: the "
                    "board runs its factory model and the deployment log names no earlier "
                    "successful flash of it", hint="name one: tinyship rollback --to VERSION"))
        self.out.to_version = want
        try:
            self._release_policy(want)
        except TinyshipError as e:
            return self._refused("policy", e)
        if self._runs(info, want, self._sha(want)) and not _trial(info) and \
                not _board_unhealthy(info):
            return self._already(want)
        try:
            target = self._choose(want, "auto", req.env or before.env)
        except TinyshipError as e:
            return self._refused("path", e)
        return self._install(target, before, rollback=True)

    def _revert_gives(self, info: Any) -> tuple[str | None, str | None] | None:
        """(version, sha) the board runs after SLOT_REVERT of its running slot (version
        None: its factory model, known only after the reset); None without a slot model."""
        running = info.running
        if running is None or running.slot is None:
            return None
        from tinyship.device import protocol as P
        from tinyship.device.slots import SlotClient

        slots = SlotClient(self.client).slot_info()
        other = slots.slots[1 - running.slot]
        if other.state == P.SlotState.CONFIRMED:
            return other.model_version, other.model_sha256
        return (None, None)

    def _rolled_away_from(self) -> set[str]:
        """Versions a successful rollback on this board moved away from: never a target."""
        return {str(a.from_model) for a in self.log.list_attempts(device_id=self.out.device_id)
                if a.command == "rollback" and a.result == "ok" and a.from_model}

    def _previous_good(self, info: Any, left: set[str]) -> str | None:
        """The version the newest successful flash of the running model replaced, else the
        newest older version a successful flash left on this board (deployment log); never
        one a rollback moved away from, never a newer one than the board runs."""
        from tinyship.device.report import version_number

        current = info.model_version
        have = version_number(current)
        flashes = [a for a in self.log.list_attempts(device_id=self.out.device_id)
                   if a.command == "flash" and a.result == "ok"]

        def fit(v: str | None) -> bool:
            n = version_number(v)
            return (v is not None and v != current and v not in left and self._known(v)
                    and (have is None or (n is not None and n < have)))

        for a in flashes:
            if a.to_model == current and fit(a.from_model):
                return str(a.from_model)
        for a in flashes:
            if fit(a.from_model):
                return str(a.from_model)
        return None

    def _registry_match(self, version: str | None, sha: str | None) -> bool:
        """`version` is in the registry with this model SHA-256."""
        try:
            return self._known(version) and self._sha(str(version)) == (sha or "").lower()
        except (TinyshipError, KeyError, TypeError):
            return False

    def _known(self, version: str | None) -> bool:
        return version is not None and version in self.reg.versions()

    def _revert_rollback(self, before: _From, gives: tuple[str | None, str | None]
                         ) -> FlashOutcome:
        from tinyship.device.slots import SlotClient

        self.out.path = "slot"
        self._start(before, gives[0], None, "slot")
        sc = SlotClient(self.client)
        try:
            with self._step("revert"):
                result = sc.revert(timeout_s=self.reboot_timeout_s)
            with self._step("verify"):
                info = self._verify(gives[0], gives[1], factory=gives[0] is None)
                self.out.to_version = info.model_version
                if not self._registry_match(info.model_version, info.model_sha256):
                    self.out.details["unknown_to_registry"] = True
            if self._known(info.model_version):
                with self._step("smoke"):
                    self._smoke(info.model_version)
        except StepFailed as f:
            board = self._board_now()
            err = self._rollback_failed(f, board)
            return self._finish("rollback_failed", err, f.step, board=board)
        self.out.details["reverted"] = result.reverted.source_name
        self.out.message = f"reverted {result.reverted.source_name}"
        return self._finish("ok", None, None, board=self._board_now())

    # --- shared: lock, connect, policy, path ----------------------------------------------

    def _locked(self, body: Callable[[], FlashOutcome]) -> FlashOutcome:
        from tinyship.deploy.lock import DeviceBusy, DeviceLock

        what = f"tinyship {self.command}" + (f" {self.out.to_version}" if
                                             self.out.to_version else "")
        self._lock = DeviceLock(self.ctx.lock_dir, port=self.url, command=what)
        try:
            self._lock.acquire()
        except DeviceBusy as e:
            return self._refused("lock", e)
        try:
            try:
                self._connect()
            except TinyshipError as e:
                return self._unreachable(e)
            try:
                if self.out.device_id is not None:
                    self._lock.add_device_id(self.out.device_id)
            except DeviceBusy as e:
                return self._refused("lock", e)
            self._reconcile()
            try:
                return body()
            except TinyshipError as e:  # reading the board outside any step
                if self._finished:
                    raise
                return self._finish("failed", e, "read board", board=self._board_now())
        finally:
            if self.client is not None:
                self.client.close()
            self._lock.release()

    def _connect(self) -> None:
        from tinyship.device.client import DeviceClient

        self.tell("connect")
        t0 = _now()
        self.client = DeviceClient.open(self.url, baud=self.baud)
        self.info = self.client.hello()
        self.out.device_id = self.info.device_id
        self.out.from_version = self.info.model_version
        self.out.steps["connect"] = round(_now() - t0, 3)

    def _reconcile(self) -> None:
        if self.out.device_id is None:
            return
        info = self.info
        closed = self.log.reconcile(self.out.device_id, info.model_version,
                                    info.model_sha256, _running_name(info))
        if closed:
            self.out.details["reconciled"] = [a.id for a in closed]

    def _release_policy(self, version: str) -> None:
        """Registry SHA-256s intact, and signed with the configured key (if any)."""
        from tinyship.errors import PolicyError

        bad = self.reg.verify(version)
        if bad:
            raise PolicyError(f"{version} failed the registry's SHA-256 check: "
                              + "; ".join(bad), hint="the version was changed after it was "
                              "registered: restore it or register a new version")
        if self.ctx.public_key is not None:
            from tinyship.signing import verify_version

            verify_version(self.reg, version, self.ctx.public_key)

    def _sha(self, version: str) -> str:
        return str(self.reg.manifest(version)["model"]["sha256"]).lower()

    @staticmethod
    def _runs(info: Any, version: str | None, sha: str | None) -> bool:
        return (info is not None and info.model_version == version
                and (info.model_sha256 or "").lower() == (sha or "").lower())

    def _from(self, info: Any, env: str | None) -> _From:
        board = str(info.board or "")
        env = env or (VIRTUAL_ENV if board.startswith("virtual-") else board or None)
        return _From(info.model_version, (info.model_sha256 or "").lower() or None,
                     info.firmware_version, env)

    def _choose(self, version: str, path: PathChoice, env: str | None) -> _Target:
        """The cheapest safe path: a model slot when the board's firmware can run the
        model, else the stored full image (refused here, before anything is sent)."""
        from tinyship.device import protocol as P
        from tinyship.device.slots import SlotClient, SlotError, image_from_registry
        from tinyship.errors import ModelError, PolicyError

        sha = self._sha(version)
        if path in ("auto", "slot") and self.info.has_slots:
            sc = SlotClient(self.client)
            slots = sc.slot_info()
            try:
                image = image_from_registry(self.reg, version, slots.next_sequence)
                sc.check_image(image, slots)
                return _Target(version, sha, "slot", env, slot_image=image, slots=slots,
                               firmware_version=self.info.firmware_version)
            except ModelError as e:  # IncompatibleModel, or no slot image possible
                if path == "slot":
                    raise
                self.out.details["slot_refused"] = str(e)
            except SlotError as e:
                if e.status == P.Status.SLOT_STATE:  # a trial runs: a person decides first
                    raise PolicyError(str(e), hint=e.hint) from None
                raise
        elif path == "slot":
            raise SlotError(f"{self.url} has no model slots (protocol "
                            f"{self.info.protocol_version}): only a full image can update it")
        return self._image_target(version, sha, env)

    def _image_target(self, version: str, sha: str, env: str | None) -> _Target:
        from tinyship.errors import ConfigError

        if env is None:
            raise ConfigError(f"{self.url} does not report its board: name its env (--env)")
        if env == VIRTUAL_ENV:
            from tinyship.device.virtual.fwimage import build_virtual_image

            image = build_virtual_image(self.reg, version)
            from tinyship import __version__

            return _Target(version, sha, "image", env, upload=image,
                           firmware_version=__version__)
        from tinyship.deploy.image import plan_upload, stored_image

        if self.ctx.public_key is not None:  # the stored image must be signed too
            from tinyship.signing import verify_version

            verify_version(self.reg, version, self.ctx.public_key, build_env=env)
        stored = stored_image(self.reg, version, env)
        plan = plan_upload(env, stored, self.client.transport.url,
                           tool_paths=self.ctx.tool_paths)
        return _Target(version, sha, "image", env, upload=plan,
                       firmware_version=stored.info.get("firmware_version"))

    # --- install, verify, smoke ------------------------------------------------------------

    def _install(self, t: _Target, before: _From, *, rollback: bool) -> FlashOutcome:
        self.out.path = t.path
        self.out.to_version = t.version
        self._start(before, t.version, t.firmware_version, t.path, env=t.env)
        try:
            if t.path == "slot":
                self._slot_update(t)
            else:
                self._image_update(t)
        except StepFailed as f:
            return self._recover(f, t, before, rollback=rollback)
        return self._finish("ok", None, None, board=self._board_now())

    def _slot_update(self, t: _Target) -> None:
        from tinyship.device.slots import SlotClient

        sc = SlotClient(self.client)
        assert t.slot_image is not None
        with self._step("install"):
            res = sc.install(t.slot_image, slots=t.slots,
                             progress=lambda phase, done, total: self.tell(
                                 f"install:{phase}", done, total))
            self.out.details["install"] = res.to_dict()
        with self._step("reboot"):
            sc.reboot_and_wait(timeout_s=self.reboot_timeout_s)
        self._check_and_confirm(t, res.slot)

    def _check_and_confirm(self, t: _Target, slot: int) -> None:
        """Verify the trial in `slot`, smoke-check it, confirm it."""
        from tinyship.device.slots import SlotClient

        sc = SlotClient(self.client)
        with self._step("verify"):
            self._verify(t.version, t.sha256, trial_slot=slot)
        with self._step("smoke"):
            self._smoke(t.version)
        with self._step("confirm"):
            sc.confirm(expect_sha256=t.sha256)
            info = self._verify(t.version, t.sha256)
            if info.running is None or info.running.trial:
                from tinyship.errors import ValidationFailed

                raise ValidationFailed("the board still reports a trial after SLOT_CONFIRM")

    def _image_update(self, t: _Target) -> None:
        with self._step("upload"):
            self.client.close()
            self._upload(t.upload, t.env)
        with self._step("reboot"):
            self.client.reconnect_after_reset(self.reboot_timeout_s)
            info = self.client.hello()
        if info.running is not None and info.running.slot is not None:
            # The image's factory model is not what runs: a slot model the upload left in
            # flash (ESP32's serial upload keeps other partitions) takes precedence.
            with self._step("clear slots"):
                self._clear_slots()
        with self._step("verify"):
            self._verify(t.version, t.sha256, factory=True, firmware=t.firmware_version)
        with self._step("smoke"):
            self._smoke(t.version)

    def _upload(self, upload: Any, env: str | None) -> None:
        def progress(phase: str, done: int, total: int) -> None:
            self.tell(f"upload:{phase}", done, total)

        if env == VIRTUAL_ENV:
            from tinyship.deploy.virtual_upload import upload_virtual

            res = upload_virtual(self.url, upload, baud=self.baud, progress=progress)
        else:
            from tinyship.deploy.image import run_upload

            res = run_upload(upload, on_line=lambda line: self.tell(f"upload:{line}"))
        self.out.details.setdefault("uploads", []).append(res.to_dict())

    def _clear_slots(self) -> None:
        """Revert slot models until the factory model runs (at most two: A and B)."""
        from tinyship.device.slots import SlotClient

        sc = SlotClient(self.client)
        for _ in range(2):
            info = self.client.hello()
            if info.running is None or info.running.slot is None:
                return
            sc.revert(timeout_s=self.reboot_timeout_s)
        info = self.client.hello()
        if info.running is not None and info.running.slot is not None:
            from tinyship.device.slots import SlotError

            raise SlotError("the board still runs a slot model after reverting both")

    def _verify(self, version: str | None, sha: str | None, *, trial_slot: int | None = None,
                factory: bool = False, firmware: str | None = None) -> Any:
        """HELLO again and check what the board runs: the expected model (version and
        SHA-256), where it should run from, the firmware version, its self-test and CRC."""
        from tinyship.device.report import board_problems
        from tinyship.errors import ValidationFailed

        info = self.client.hello()
        self.info = info
        problems: list[str] = []
        run = info.running
        if trial_slot is not None and (run is None or run.slot != trial_slot or not run.trial):
            problems.append(
                f"the board did not keep the new model as a trial: it runs "
                f"{_running_name(info)} (its trial boot failed the health check: model load "
                "or golden-vector self-test)")
        if factory and run is not None and run.slot is not None:
            problems.append(f"the board runs {_running_name(info)}, not the image's "
                            "factory model")
        if version is not None and info.model_version != version:
            problems.append(f"it reports model {info.model_version}, expected {version}")
        if sha is not None and (info.model_sha256 or "").lower() != sha.lower():
            problems.append(f"its model SHA-256 {str(info.model_sha256)[:12]}… is not "
                            f"{version}'s {sha[:12]}…")
        if firmware is not None and info.firmware_version != firmware:
            problems.append(f"it reports firmware {info.firmware_version}, expected "
                            f"{firmware}")
        problems += board_problems(info.to_dict())
        if problems:
            raise ValidationFailed("; ".join(problems))
        return info

    def _smoke(self, version: str) -> None:
        """The HIL harness on `smoke_vectors` of the version's test vectors: identity,
        parity within tolerance and latency within the board's budget."""
        from types import SimpleNamespace

        from tinyship.errors import ValidationFailed
        from tinyship.hil.harness import validate

        if self.smoke_vectors <= 0:
            return
        self.tell("smoke", 0, self.smoke_vectors)
        report = validate(self.url, self.reg.root, version,
                          board_cfg=SimpleNamespace(
                              latency_budget_us=self.ctx.latency_budget_us),
                          tolerance_lsb=self.tolerance_lsb, limit=self.smoke_vectors,
                          robustness_probe=False, client=self.client,
                          on_progress=lambda done, total: self.tell("smoke", done, total))
        self.out.details["smoke"] = {
            "vectors": report.vectors, "passed": report.passed,
            "max_lsb_diff": report.max_lsb_diff, "latency_us": report.latency_us,
            "failed": [c.to_dict() for c in report.failed_checks]}
        if not report.passed:
            raise ValidationFailed(
                f"smoke check failed on {report.vectors} vectors: " + "; ".join(
                    f"{c.name} ({c.detail})" for c in report.failed_checks))

    # --- failure and rollback --------------------------------------------------------------

    def _recover(self, f: StepFailed, t: _Target, before: _From, *, rollback: bool
                 ) -> FlashOutcome:
        """After a failed step: roll back (unless told not to), verify, log, and say so."""
        from tinyship.errors import ValidationFailed

        if not rollback and self.command == "flash" and isinstance(f.error, ValidationFailed):
            board = self._board_now()
            return self._finish("failed", f.error, f.step, board=board,
                                message="left as it is (--no-rollback)")
        self.tell("rollback")
        try:
            with self._step("rollback"):
                did = (self._undo_slot(t, before) if t.path == "slot"
                       else self._undo_image(t, before))
                self._verify(before.version, before.sha256)
        except StepFailed as g:
            from tinyship.errors import DeviceError

            # a board the rollback waited for in vain gets one quick look, not another wait
            board = self._board_now(wait=not isinstance(g.error, DeviceError))
            self.out.rollback = f"failed: {g.error}"
            err = self._rollback_failed(f, board, why=str(g.error))
            return self._finish("rollback_failed", err, f.step, board=board,
                                rollback_performed=True)
        board = self._board_now()
        self.out.rollback = did
        from tinyship.errors import RolledBack

        what = "rollback" if self.command == "rollback" else "flash"
        err = RolledBack(f"{what} failed at {f.step}: {f.error}; undone ({did}): the board "
                         f"runs {board.model_version or before.version} again, verified")
        return self._finish("rolled_back", err, f.step, board=board, rollback_performed=True)

    def _rollback_failed(self, f: StepFailed, board: BoardNow, *, why: str | None = None
                         ) -> TinyshipError:
        from tinyship.errors import RollbackFailed

        now = _describe(board)
        what = "rollback" if self.command == "rollback" else "flash"
        tail = f"; rolling back failed too: {why}" if why else ""
        return RollbackFailed(f"{what} failed at {f.step}: {f.error}{tail}; the board now: "
                              f"{now}")

    def _reach(self, timeout_s: float | None = None) -> Any:
        """HELLO, reconnecting (a board still resetting, a port that re-enumerated) for up
        to `timeout_s` (default: the rollback's wait)."""
        from tinyship.errors import DeviceError

        try:
            if not self.client.transport.is_open:
                raise DeviceError("port closed")
            return self.client.hello()
        except DeviceError:
            self.client.reconnect_after_reset(timeout_s or self.rollback_timeout_s)
            return self.client.hello()

    def _undo_slot(self, t: _Target, before: _From) -> str:
        from tinyship.device import protocol as P
        from tinyship.device.slots import SlotClient

        self._reach()
        sc = SlotClient(self.client)
        slots = sc.slot_info()
        if slots.install_in_progress:
            # An install cut short: a reset abandons it (the slot stays uncommitted).
            sc.reboot_and_wait(timeout_s=self.rollback_timeout_s)
            slots = sc.slot_info()
        ours = [i for i, r in enumerate(slots.slots) if r.model_version == t.version
                and r.model_sha256 == t.sha256 and r.state == P.SlotState.PENDING]
        run = slots.running
        if ours and (run.slot is None or not self._is_target(slots.slots[run.slot], t)):
            # Installed, never tried: boot it as a trial so that it can be revoked (a
            # pending model would otherwise run at the board's next reset).
            sc.reboot_and_wait(timeout_s=self.rollback_timeout_s)
            slots = sc.slot_info()
            run = slots.running
        if run.slot is not None and self._is_target(slots.slots[run.slot], t):
            res = sc.revert(timeout_s=self.rollback_timeout_s)
            if res.boot is None:  # revoked, but it runs until a reset
                sc.reboot_and_wait(timeout_s=self.rollback_timeout_s)
            return f"reverted {res.reverted.source_name}"
        return "nothing to undo: the new model is not running (the board reverted it itself)"

    @staticmethod
    def _is_target(rec: Any, t: _Target) -> bool:
        return bool(rec.model_version == t.version and rec.model_sha256 == t.sha256)

    def _undo_image(self, t: _Target, before: _From) -> str:
        from tinyship.errors import DeviceError, RegistryError

        try:  # a board in its bootloader never answers: wait only as long as for a reboot
            info = self._reach(self.reboot_timeout_s)
            if self._runs(info, before.version, before.sha256) and not \
                    _board_unhealthy(info):
                return "nothing to undo: the board still runs its previous image"
        except DeviceError:
            pass  # no answer (a torn image: the bootloader waits): upload the old one
        version = self._registry_version(before)
        if version is None:
            raise RegistryError(f"the previous model {before.version} (SHA-256 "
                                f"{str(before.sha256)[:12]}…) is not in the registry: no "
                                "image to put back")
        prev = self._image_target(version, before.sha256 or "", t.env)
        if self.client.transport.is_open:
            self.client.close()
        self._upload(prev.upload, t.env)
        self.client.reconnect_after_reset(self.rollback_timeout_s)
        return f"re-uploaded the {version} image"

    def _registry_version(self, before: _From) -> str | None:
        """The registry version of the model the board ran: its reported name, else (a
        board that misreports its name) a version with that model's SHA-256, preferring
        one whose name the reported one contains, else the newest."""
        if self._known(before.version) and self._sha(str(before.version)) == before.sha256:
            return before.version
        same: list[str] = []
        for v in reversed(self.reg.versions()):
            with contextlib.suppress(TinyshipError, KeyError, TypeError):
                if self._sha(v) == before.sha256:
                    same.append(v)
        named = [v for v in same if v in str(before.version)]  # "v0001-bad" -> v0001
        return (named or same)[0] if same else None

    # --- bookkeeping -----------------------------------------------------------------------

    def tell(self, step: str, done: int = 0, total: int = 0) -> None:
        if self.ctx.progress is not None:
            self.ctx.progress(step, done, total)

    def _step(self, name: str) -> _StepCtx:
        return _StepCtx(self, name)

    def _start(self, before: _From, to_version: str | None, to_firmware: str | None,
               path: str | None, env: str | None = None) -> None:
        info = self.info
        self.attempt = self.log.start_attempt(
            command=self.command, device_id=self.out.device_id, port=self.url,
            env=env or before.env, board=info.board if info is not None else None,
            from_firmware=before.firmware_version, from_model=before.version,
            to_firmware=to_firmware, to_model=to_version, path=path)
        self.out.attempt_id = self.attempt

    def _board_now(self, *, wait: bool = True) -> BoardNow:
        """What the board reports now (reconnecting and waiting for it, with `wait`)."""
        from tinyship.errors import DeviceError

        try:
            if self.client is None:
                return BoardNow(False)
            info = self._reach() if wait else self.client.hello()
        except (DeviceError, OSError):
            return BoardNow(False)
        st = info.self_test.status_name if info.self_test is not None else None
        return BoardNow(True, info.firmware_version, info.model_version, info.model_sha256,
                        _running_name(info), st)

    def _finish(self, result: str, error: TinyshipError | None, step: str | None, *,
                board: BoardNow | None = None, message: str | None = None,
                rollback_performed: bool = False) -> FlashOutcome:
        from tinyship.deploy.log import BoardReport

        self._finished = True
        o = self.out
        o.result = result
        o.error = error
        o.failed_step = step
        o.message = message or (str(error) if error is not None else o.message)
        o.board = board
        if self.attempt is None:
            info = self.info
            self._start(self._from(info, None) if info is not None else
                        _From(None, None, None, None), o.to_version, None, o.path)
        assert self.attempt is not None
        b = board or BoardNow(False)
        self.log.finish_attempt(
            self.attempt, result, failed_step=step, message=o.message,
            rollback_performed=rollback_performed, rollback_result=o.rollback,
            board=BoardReport(b.model_version, b.model_sha256, b.running))
        return o

    def _refused(self, step: str, e: TinyshipError) -> FlashOutcome:
        board = None
        if self.info is not None:
            board = BoardNow(True, self.info.firmware_version, self.info.model_version,
                             self.info.model_sha256, _running_name(self.info))
        return self._finish("refused", e, step, board=board)

    def _unreachable(self, e: TinyshipError) -> FlashOutcome:
        return self._finish("failed", e, "connect", board=BoardNow(False))

    def _already(self, version: str) -> FlashOutcome:
        self.out.path = None
        self.out.message = f"the board already runs {version}: nothing to do"
        return self._finish("ok", None, None, board=self._board_now(),
                            message=self.out.message)


class _StepCtx:
    """One logged step: its start and end rows, its duration in the outcome, and any
    tinyship error turned into `StepFailed` naming the step."""

    def __init__(self, job: _Deploy, name: str) -> None:
        self.job = job
        self.name = name
        self.t0 = 0.0

    def __enter__(self) -> _StepCtx:
        assert self.job.attempt is not None
        self.job.log.step_started(self.job.attempt, self.name)
        self.t0 = _now()
        self.job.tell(self.name)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: Any) -> Literal[False]:
        job, dur = self.job, _now() - self.t0
        job.out.steps[self.name] = round(job.out.steps.get(self.name, 0.0) + dur, 3)
        assert job.attempt is not None
        if ev is None:
            job.log.step_ended(job.attempt, self.name, duration_s=dur, ok=True)
            return False
        if isinstance(ev, StepFailed):  # a nested step already recorded it
            job.log.step_ended(job.attempt, self.name, duration_s=dur, ok=False,
                               message=str(ev.error))
            raise StepFailed(self.name, ev.error) from None
        if isinstance(ev, TinyshipError):
            job.log.step_ended(job.attempt, self.name, duration_s=dur, ok=False,
                               message=str(ev))
            raise StepFailed(self.name, ev) from None
        if isinstance(ev, Exception):  # a bug or an OS error: still a logged, failed step
            job.log.step_ended(job.attempt, self.name, duration_s=dur, ok=False,
                               message=f"{type(ev).__name__}: {ev}")
        return False  # KeyboardInterrupt and kin: the row stays open; reconcile closes it


def _now() -> float:
    import time

    return time.monotonic()


def _trial(info: Any) -> bool:
    return bool(info.running is not None and info.running.trial)


def _board_unhealthy(info: Any) -> bool:
    from tinyship.device.report import board_problems

    return bool(board_problems(info.to_dict()))


def _running_name(info: Any) -> str | None:
    run = getattr(info, "running", None)
    if run is None:
        return None
    return f"{run.source_name} ({run.mode_name})"


def _describe(board: BoardNow) -> str:
    if not board.reachable:
        return "does not answer (it may wait in its bootloader: upload an image)"
    return (f"runs model {board.model_version} (SHA-256 {str(board.model_sha256)[:12]}…), "
            f"{board.running or 'factory'}, firmware {board.firmware_version}, self-test "
            f"{board.self_test}")
