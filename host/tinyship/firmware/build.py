"""Build firmware for one PlatformIO environment with a registry version embedded.

The PlatformIO pre-build script (`firmware/scripts/select_model.py`) reads
`TINYSHIP_MODEL` / `TINYSHIP_REGISTRY` / `TINYSHIP_MLPERF_MODEL`; this module sets them,
refuses a model quantized for a runtime profile the environment's TFLM library cannot run,
and stores the build outputs beside the registry (`<registry>/builds/<version>/<env>/`),
never inside the immutable version folder.
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyship.errors import BuildError, RegistryError
from tinyship.profiles import PROFILES, compatible
from tinyship.registry import DAMAGED_HINT, Registry, sha256_file
from tinyship.tflm_libraries import EnvSpec, LibraryCheckError, LibraryRelease, check_env

PROFILE_OPTION = "custom_tinyship_profile"
OUTPUT_NAMES = ("firmware.bin", "firmware.hex", "firmware.uf2", "firmware.elf")
#: Images an ESP32 full flash needs besides the app (platform-espressif32's espidf builder
#: writes both to `.pio/build/<env>/` and passes them to esptool at 0x0 and 0x8000);
#: stored when the build produced them, so `tinyship.deploy.image` can flash the full set.
EXTRA_IMAGE_NAMES = ("bootloader.bin", "partitions.bin")


@dataclass(frozen=True)
class BuildResult:
    env: str
    version: str
    profile: str
    output_dir: str
    artifacts: dict[str, str]  # file name -> sha256
    command: list[str]
    uploaded: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def read_envs(ini: Path) -> dict[str, dict[str, str]]:
    """Environments of a platformio.ini (`[env:NAME]` sections) with their raw options."""
    if not ini.is_file():
        raise BuildError(f"platformio.ini not found: {ini}")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(ini, encoding="utf-8")
    except configparser.Error as e:
        raise BuildError(f"{ini}: cannot parse: {e}") from None
    return {
        s.split(":", 1)[1]: dict(parser.items(s))
        for s in parser.sections()
        if s.startswith("env:")
    }


def _values(text: str) -> tuple[str, ...]:
    """A multi-value option (one per line or comma separated), comments dropped."""
    items = (v.split(" ;", 1)[0].strip() for line in text.splitlines() for v in line.split(","))
    return tuple(v for v in items if v and not v.startswith((";", "#")))


def env_spec(ini: Path, env: str) -> EnvSpec:
    """`[env:NAME]` over the common `[env]` section, as the TFLM library check needs it;
    the ESP-IDF manifest is `<src_dir>/idf_component.yml` (`[platformio] src_dir`)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(ini, encoding="utf-8")
    except configparser.Error as e:
        raise BuildError(f"{ini}: cannot parse: {e}") from None
    section = f"env:{env}"
    if not parser.has_section(section):
        env_profile(ini, env)  # raises, naming the known envs
    opts = {**(dict(parser.items("env")) if parser.has_section("env") else {}),
            **dict(parser.items(section))}
    frameworks = _values(opts.get("framework", ""))
    src_dir = parser.get("platformio", "src_dir", fallback="src").strip()
    manifest = ini.parent / src_dir / "idf_component.yml"
    text = None
    if "espidf" in frameworks and manifest.is_file():
        text = manifest.read_text(encoding="utf-8")
    return EnvSpec(
        name=env,
        board=opts.get("board", "").strip(),
        platform=opts.get("platform", "").strip(),
        frameworks=frameworks,
        profile=opts.get(PROFILE_OPTION, "").strip(),
        lib_deps=_values(opts.get("lib_deps", "")),
        idf_manifest=text,
        idf_manifest_path=str(manifest.relative_to(ini.parent)
                              if manifest.is_relative_to(ini.parent) else manifest),
    )


def env_library(ini: Path, env: str) -> LibraryRelease:
    """The checked TFLM library release `env` pins (`tinyship.tflm_libraries.check_env`):
    BuildError when it is unknown, not pinned exactly, unchecked on the board, needs
    another ESP-IDF than the platform's, or runs less than the env's profile claims."""
    try:
        return check_env(env_spec(ini, env))
    except LibraryCheckError as e:
        raise BuildError(str(e)) from None


def env_profile(ini: Path, env: str) -> str:
    """The target-runtime profile an environment declares; BuildError names what's wrong."""
    envs = read_envs(ini)
    if env not in envs:
        raise BuildError(
            f"no environment '{env}' in {ini} (known: {', '.join(sorted(envs)) or 'none'})"
        )
    profile = envs[env].get(PROFILE_OPTION, "").strip()
    if profile not in PROFILES:
        raise BuildError(
            f"{ini} [env:{env}]: {PROFILE_OPTION} = '{profile}' is not a known profile "
            f"({', '.join(sorted(PROFILES))})"
        )
    return profile


def check_compatible(env: str, runtime_profile: str, version: str, model_profile: str) -> None:
    """Refuse a model quantized for a scheme the env's TFLM library computes wrong."""
    if not compatible(runtime_profile, model_profile):
        raise BuildError(
            f"model {version} was quantized for profile '{model_profile}', but env '{env}' "
            f"links a TFLM library with profile '{runtime_profile}', which cannot run it "
            "correctly (older TFLM silently mis-computes per-channel quantized Dense layers); "
            f"retrain with `tinyship train --profile {runtime_profile}` (or quantization.profile "
            f"= '{runtime_profile}' in the config) or pick another env"
        )


def find_pio() -> list[str]:
    """The PlatformIO command: `pio` on PATH, else `python -m platformio` if installed."""
    exe = shutil.which("pio") or shutil.which("platformio")
    if exe:
        return [exe]
    try:
        import platformio  # noqa: F401
    except ImportError:
        raise BuildError(
            "PlatformIO is not installed",
            hint="pip install platformio (it needs network access to fetch board platforms)",
        ) from None
    return [sys.executable, "-m", "platformio"]


def build(
    project_dir: Path,
    registry: Registry,
    env: str,
    ref: str | None = None,
    *,
    upload: bool = False,
    upload_port: str | None = None,
    pio: list[str] | None = None,
    on_line: Callable[[str], None] | None = None,
    mlperf_model: str | None = None,
) -> BuildResult:
    """Run `pio run -e ENV` with the version embedded; store the outputs with the version.
    `mlperf_model` (the config's `board.mlperf_model`) is what `profile%` reports; None leaves
    it to the pre-build script (the project's tinyship.toml, else its default)."""
    version = registry.resolve(ref)
    manifest = registry.manifest(version)
    runtime_profile = env_profile(project_dir / "platformio.ini", env)
    env_library(project_dir / "platformio.ini", env)
    check_compatible(env, runtime_profile, version, str(manifest.get("profile")))
    problems = registry.verify(version)
    if problems:  # a registry problem (exit 6), found before PlatformIO copies the files
        raise RegistryError(f"registry version {version} is damaged: {'; '.join(problems)}",
                            hint=DAMAGED_HINT)

    cmd = [*(pio or find_pio()), "run", "-e", env, "-d", str(project_dir)]
    if upload:
        cmd += ["-t", "upload"]
        if upload_port:
            cmd += ["--upload-port", upload_port]
    environ = {**os.environ, "TINYSHIP_MODEL": version,
               "TINYSHIP_REGISTRY": str(registry.root.resolve())}
    if mlperf_model is not None:
        environ["TINYSHIP_MLPERF_MODEL"] = mlperf_model
    try:
        proc = subprocess.Popen(cmd, cwd=project_dir, env=environ, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        raise BuildError(f"cannot run {cmd[0]}: {e}") from None
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = [*tail[-30:], line.rstrip()]
        if on_line:
            on_line(line.rstrip())
    if proc.wait() != 0:
        offline = any("HTTPClientError" in t or "Could not resolve" in t for t in tail)
        raise BuildError(
            f"pio run -e {env} failed (exit {proc.returncode}):\n" + "\n".join(tail[-15:]),
            hint=("PlatformIO could not download the board platform or libraries; the first "
                  "build of an env needs network access (later builds use ~/.platformio)")
            if offline else None,
        )

    build_dir = project_dir / ".pio" / "build" / env
    found = [build_dir / n for n in OUTPUT_NAMES if (build_dir / n).is_file()]
    if not found:
        raise BuildError(f"pio reported success but left no firmware image in {build_dir}")
    found += [build_dir / n for n in EXTRA_IMAGE_NAMES if (build_dir / n).is_file()]
    out_dir = registry.root / "builds" / version / env
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{env}-", dir=out_dir.parent))
    try:
        for f in found:
            shutil.copy2(f, tmp / f.name)
        artifacts = {f.name: sha256_file(tmp / f.name) for f in found}
        info = {"env": env, "version": version, "profile": runtime_profile,
                "model_sha256": manifest.get("model", {}).get("sha256"),
                "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": cmd, "artifacts": artifacts}
        (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            old = out_dir.with_name(f".{env}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return BuildResult(env, version, runtime_profile, str(out_dir), artifacts, cmd, upload)
