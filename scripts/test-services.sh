#!/usr/bin/env bash
# Installs what the test suite needs that pip cannot: redis-server (the Redis tests start
# their own instances on free loopback ports). Aerospike needs nothing here: the tests start a
# server themselves when the Aerospike tools folder is next to the repository (see README).
# Run by `make test` (and so by CI); safe to run again: it does nothing when all is there.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "note: redis-server is not installed and installing it needs root:" >&2
    echo "      the Redis tests will skip (install it with: sudo apt-get install -y redis-server)" >&2
    exit 0
fi
echo "installing redis-server (apt-get) for the Redis tests" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
