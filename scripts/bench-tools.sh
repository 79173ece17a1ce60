#!/usr/bin/env bash
# Installs what the published benchmark (bench/run.py, run by `make bench`) needs that pip cannot:
# wrk (the HTTP load generator) and redis-server (the `mly redis L1` server's store, started by the
# benchmark on a free loopback port). Safe to run again: it does nothing when both are there.
# Without root (or passwordless sudo) it says what to install and fails, since the benchmark cannot
# run without wrk.
set -euo pipefail

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "error: ${missing[*]} not installed and installing needs root: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing ${missing[*]} (apt-get) for the benchmark" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
