#!/usr/bin/env bash
# The test suite: lint, then pytest (host pipeline, firmware core, virtual board + HIL).
# Installs what it needs first. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/bootstrap.sh")"
cd "$root"
lint=(host tests scripts)
[ -d hil ] && lint+=(hil)
"$venv/bin/ruff" check "${lint[@]}"
"$venv/bin/mypy"
"$venv/bin/python" -m pytest "$@"
