#!/usr/bin/env bash
# The main job on the embedded defaults: bundled battery dataset -> trained, quantized,
# gated registry version. Installs what it needs first. Extra arguments go to `tinyship train`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/bootstrap.sh")"
cd "$root"
"$venv/bin/tinyship" train "$@"
