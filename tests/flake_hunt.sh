#!/usr/bin/env bash
# Flake hunt: run the integration tests RUNS times in a row, as `make test` runs them, with a
# CPU-heavy neighbour on the same cores (a PyTorch matrix-product loop on 2 threads, as a
# co-located trainer would be). Prints one line a run and stops at the first failure, keeping
# its log. A test that fails here assumed a timing: fix the test or the code, not the hunt.
#   tests/flake_hunt.sh [RUNS] [PYTEST ARGS...]    (default 5 runs of `-m integration`)
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
shift || true
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-m integration)
logs=$(mktemp -d /tmp/flake-hunt.XXXX)

.venv/bin/python -c '
import torch
torch.set_num_threads(2)
a = torch.randn(768, 768)
while True:
    a = torch.tanh(a @ a)
' &
neighbour=$!
trap 'kill $neighbour 2>/dev/null' EXIT

for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  .venv/bin/python -m pytest -q -n 2 --dist loadscope -p no:cacheprovider "${args[@]}" >"$logs/run-$i.log" 2>&1
  rc=$?
  echo "run $i/$runs: exit $rc in $(( $(date +%s) - start )) s: $(tail -n 1 "$logs/run-$i.log")"
  if [ $rc -ne 0 ]; then
    echo "failed; log: $logs/run-$i.log"
    exit 1
  fi
done
echo "all $runs runs passed (logs: $logs)"
