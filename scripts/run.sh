#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run segstream on the
# embedded default (no other service): `segstream demo`, the reference workload's seven
# segments over generated events with a live wall clock, until Ctrl-C. Arguments are
# passed to the demo (e.g. `scripts/run.sh --rate 2000 --duration 60`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
# The same build as scripts/test.sh (tests included): a binaries-only build resolves
# dependency features differently and would compile DataFusion a second time.
cargo test --locked --workspace --no-run
exec "$CARGO_TARGET_DIR/debug/segstream" demo "$@"
