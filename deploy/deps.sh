#!/bin/sh
# Installs the Debian 12 packages Liaison needs to build, test, fuzz and demo.
# As root it runs apt-get; otherwise it prints the exact command to run.
set -eu
PKGS="build-essential pkg-config libzmq3-dev libczmq-dev libprotobuf-c-dev protobuf-c-compiler libssl-dev openssl check libsqlite3-dev clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
else
    echo "deps: missing packages:$missing" >&2
    echo "deps: run as root: $cmd" >&2
    exit 1
fi
