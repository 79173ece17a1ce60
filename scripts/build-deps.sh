#!/usr/bin/env bash
# Installs the C library mly's optional native HTTP/2 engine builds against: libnghttp2's headers
# (Debian libnghttp2-dev) and pkg-config. Run by the Makefile before pip builds mly, and by
# scripts/test-services.sh. Without them mly still builds and HTTP/2 is served by the pure-Python
# h2 package (slower). Safe to run again: it does nothing when all is there.
set -euo pipefail

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if ! pkg-config --exists libnghttp2 2>/dev/null && [ ! -f /usr/include/nghttp2/nghttp2.h ]; then
    missing+=(libnghttp2-dev)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: ${missing[*]} not found and this is not a Debian-like system: install libnghttp2's" >&2
    echo "      headers for the native HTTP/2 engine (HTTP/2 is served by the h2 package without them)" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "note: ${missing[*]} not installed and installing needs root: mly builds without the native" >&2
    echo "      HTTP/2 engine (sudo apt-get install -y ${missing[*]}, then make clean setup)" >&2
    exit 0
fi
echo "installing ${missing[*]} (apt-get) for the native HTTP/2 engine" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
