#!/usr/bin/env bash
# Installs what the test suite needs that pip cannot: redis-server (the Redis tests start their
# own instances on free loopback ports), h2load from nghttp2-client (the HTTP/2 smoke test) and
# prometheus with promtool (the operations tests: deploy/prometheus checked by promtool, a real
# Prometheus scraping a server) and systemd-analyze from systemd (the service unit).
# Aerospike needs nothing here: the tests start a server themselves when the Aerospike tools folder
# is next to the repository (see README). Run by `make test` (and so by CI); safe to run again: it
# does nothing when all is there.
set -euo pipefail

bash "$(dirname "$0")/build-deps.sh"  # libnghttp2-dev: the native HTTP/2 engine the tests cover
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "note: ${missing[*]} not installed and installing needs root:" >&2
    echo "      those tests will skip (sudo apt-get install -y ${missing[*]})" >&2
    exit 0
fi
echo "installing ${missing[*]} (apt-get) for the tests" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
