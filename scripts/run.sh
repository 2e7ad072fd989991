#!/usr/bin/env bash
# The main job on the embedded defaults: bundled battery dataset -> trained, quantized, gated
# registry version -> validated over serial on the virtual board. Installs what it needs first.
#
#   scripts/run.sh                          # virtual board
#   TINYSHIP_DEVICE=/dev/ttyACM0 scripts/run.sh   # a real board already flashed with the new
#                                                  # version (see firmware/README.md)
# Extra arguments go to `tinyship train` (e.g. --config my.toml).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/bootstrap.sh")"
cd "$root"
tinyship="$venv/bin/tinyship"
config=()
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--config" ]; then j=$((i + 1)); config=(--config "${!j}"); fi
done

echo "== 1/2 train: data checks, training, int8 conversion, C export, quality gates, registry"
"$tinyship" train "$@"
version="$("$tinyship" registry show latest "${config[@]}" --json |
  "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["version"])')"

echo "== 2/2 hil: validate $version on ${TINYSHIP_DEVICE:-the virtual board}"
"$tinyship" hil --device "${TINYSHIP_DEVICE:-virtual}" --model "$version" "${config[@]}"
