#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run segstream on the
# embedded default (a local data directory, no other service): the reference workload's
# schema and seven segments, a short day of traffic, and who entered and left when.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo build --locked -p segstream
bin="$CARGO_TARGET_DIR/debug/segstream"
data="${SEGSTREAM_DATA_DIR:-$(mktemp -d -t segstream-run.XXXXXX)}"
echo "segstream: data directory $data (manual clock)"
"$bin" --data-dir "$data" --clock manual sql \
  -f sql-examples/workload/schema.sql \
  -f sql-examples/workload/segments.sql \
  -e "EXPLAIN SEGMENT cart_abandoners" \
  -f sql-examples/workload/story.sql
