#!/usr/bin/env bash
# The Python side of the tests: a virtual environment outside the clone with grpcio-tools
# (from PyPI), for the end-to-end test of a client that is not Rust. Safe to run again.
# Prints the interpreter's path on its last line.
set -euo pipefail

venv="${SEGSTREAM_VENV:-$HOME/.cache/segstream-venv}"
want="grpcio-tools==1.85.1"
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    echo "setup-python: installing python3-venv" >&2
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3-venv >/dev/null
    /usr/bin/python3 -m venv "$venv"
  fi
fi
installed="$("$venv/bin/python" -m pip show grpcio-tools 2>/dev/null || true)"
if ! grep -qx "Version: ${want#*==}" <<<"$installed"; then
  echo "setup-python: installing $want into $venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$want"
fi
echo "$venv/bin/python"
