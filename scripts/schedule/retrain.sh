#!/usr/bin/env bash
# One run of the retrain-and-reflash job, for cron, a systemd timer or a CI schedule.
#
#   scripts/schedule/retrain.sh NEW_DATA [tinyship retrain options]
#   TINYSHIP_CONFIG=/srv/tinyship/tinyship.toml scripts/schedule/retrain.sh /srv/incoming/
#
# NEW_DATA: a CSV or a folder of CSVs of new labelled rows. The HIL rig and the fleet come
# from the config's [retrain] section (hil_device = "virtual" or a device URL; fleet = a
# fleet file), or --hil-device / --fleet here. Exit code: tinyship retrain's (README
# "Retrain"): 0 deployed, 14 nothing due, 15 not better, 16 deployed with failures,
# 17 refused, 18 awaiting approval; a scheduler should alert on 16, 17 and >= 1 but < 14.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$("$root/scripts/bootstrap.sh")"
config="${TINYSHIP_CONFIG:-$root/tinyship.toml}"
new_data="$1"
shift
exec "$venv/bin/tinyship" retrain --config "$config" --new-data "$new_data" "$@"
