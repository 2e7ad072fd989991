"""`tinyship build`: PlatformIO firmware with a registry version embedded."""

from __future__ import annotations

from pathlib import Path

import click

from tinyship.cli._common import (
    echo_json,
    json_option,
    model_option,
    project_context,
    registry_options,
)


@click.command()
@click.option("--env", "-e", "env", required=True, help="PlatformIO environment (board).")
@model_option
@registry_options
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("."), show_default=True, help="Folder with platformio.ini.")
@click.option("--upload", is_flag=True, help="Also flash the board (pio -t upload).")
@click.option("--port", "upload_port", default=None, help="Upload port (with --upload).")
@click.option("--pio", "pio_exe", envvar="TINYSHIP_PIO", default=None, metavar="PATH",
              help="PlatformIO executable [env TINYSHIP_PIO; default: pio on PATH, "
                   "else python -m platformio].")
@json_option
def build(env: str, model: str | None, config_path: Path | None, registry_dir: Path | None,
          project_dir: Path, upload: bool, upload_port: str | None, pio_exe: str | None,
          as_json: bool) -> None:
    """Compile the firmware for ENV with a model version inside; refuse incompatible models."""
    from tinyship.firmware.build import build as run_build

    reg, board = project_context(config_path, registry_dir)
    # A name the config sets wins; otherwise the pre-build script reads the project's
    # tinyship.toml (which may not be the one in this folder) or uses the default.
    mlperf = board.mlperf_model if "mlperf_model" in board.model_fields_set else None
    echo = None if as_json else (lambda line: click.echo(line, err=True))
    result = run_build(project_dir, reg, env, model, upload=upload, upload_port=upload_port,
                       pio=[pio_exe] if pio_exe else None, on_line=echo, mlperf_model=mlperf)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"built {env} with model {result.version} -> {result.output_dir}")
