#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run): every unit, planner-file and
# end-to-end test, on a debug build. Ends with one line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Python grpcio for the end-to-end test of a client that is not Rust.
SEGSTREAM_PYTHON="$(scripts/setup-python.sh | tail -n 1)"
export SEGSTREAM_PYTHON
. scripts/env.sh
log="$(mktemp -t segstream-test.XXXXXX)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --workspace 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
