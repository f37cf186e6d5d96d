# Sourced by the scripts: build outputs live outside the clone, so every clone on this
# machine reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/segstream-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
