#!/usr/bin/env bash
# The README's test command, and what CI runs (.ci/run): every unit, planner-file and
# end-to-end test, on a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo test --locked --workspace
