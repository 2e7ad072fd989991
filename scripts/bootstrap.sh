#!/usr/bin/env bash
# Create (or reuse) the project virtual environment in .venv and install tinyship into it.
# Re-installs only when pyproject.toml changed. Source it or run it; prints the venv path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TINYSHIP_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "tinyship: creating virtual environment $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.tinyship-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "tinyship: installing dependencies (first run takes a few minutes)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[ml,dev]" >&2
  echo "$want" > "$stamp"
fi
echo "$venv"
