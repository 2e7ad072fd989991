#!/usr/bin/env bash
# Flash one registry version onto every board of a fleet file, a few boards at a time, and
# print the table: per board its label, device, from -> to version, path, result, failing
# step, rollback and what it runs now. Each board is verified, smoke-tested and confirmed,
# or rolled back to its previous model, on its own; one board's failure stops no other.
#
#   scripts/fleet_flash.sh FLEET.toml VERSION [tinyship fleet flash options]
#   scripts/fleet_flash.sh scripts/fleet.example.toml production --workers 2
#   scripts/fleet_flash.sh rig.toml v0007 --json > fleet-result.json   # one JSON document
#
# A fleet file's format: scripts/fleet.example.toml. Boards plugged into another machine:
# run `tinyship device serve --port /dev/ttyACM0 --listen 0.0.0.0:2217` there and list
# them as rfc2217://that-machine:2217. Every attempt is in `tinyship deployments`.
# Exit code: tinyship's. 0: every board runs VERSION; else the most severe board's:
# 13 rollback failed > 8 unreachable > 12 rolled back > 9 > 7 > 11 > 6; 3: bad fleet file.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/bootstrap.sh")"
fleet="$1" version="$2"
shift 2

code=0
"$venv/bin/tinyship" fleet flash "$fleet" --model "$version" "$@" || code=$?
case "$code" in
  0) echo "every board in $fleet runs $version" >&2 ;;
  12) echo "some boards were put back on their previous model (safe, not updated);" \
        "the table says which step failed" >&2 ;;
  13) echo "ATTENTION: a board runs no verified model; see the table and" \
        "\`tinyship rollback --device URL\`" >&2 ;;
  8) echo "a board did not answer: check its cable or rig host, then run again" \
       "(boards already updated are skipped: they run $version)" >&2 ;;
esac
exit "$code"
