#!/usr/bin/env bash
# Time the pipeline stages and the HIL link with pytest-benchmark; results in .benchmarks/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/bootstrap.sh")"
cd "$root"
"$venv/bin/python" -m pytest tests/test_bench_*.py --benchmark-enable --benchmark-autosave \
  --benchmark-columns=min,mean,max,rounds "$@"
