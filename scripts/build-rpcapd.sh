#!/usr/bin/env bash
# Builds rpcapd (the RPCAP server the remote-capture tests talk to) from
# Debian's own libpcap *source package* and installs it to $PREFIX/sbin.
# Debian ships no rpcapd and its libpcap is built without remote capture, so
# the tests need this. Idempotent: does nothing if rpcapd is already there
# (set FORCE=1 to rebuild). Run as root (apt-get, install).
# Needs: dpkg-dev gcc make libssl-dev libcrypt-dev flex bison.
set -euo pipefail
PREFIX=${PREFIX:-/usr/local}
WORK=${WORK:-/tmp/rpcapd-build}

# An rpcapd built without libssl-dev lacks -S (rpcaps), which the TLS tests need.
if [ -x "$PREFIX/sbin/rpcapd" ] && [ "${FORCE:-0}" != 1 ] &&
    "$PREFIX/sbin/rpcapd" -h 2>&1 | grep -q -- '-S '; then
    echo "build-rpcapd.sh: $PREFIX/sbin/rpcapd already installed"
    exit 0
fi

if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/; then
    # Clone the existing binary source entry as deb-src (no host names hard-coded).
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
        > /etc/apt/sources.list.d/debian-src.sources
    apt-get update -qq
fi
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"
apt-get source -q libpcap >/dev/null 2>&1
cd libpcap-*/
# --enable-remote builds rpcapd; libssl-dev present means rpcapd also gets
# its TLS mode (-S).
./configure -q --enable-remote --disable-dbus --disable-rdma
make -s -j"$(nproc)" libpcap.a
make -s -C rpcapd -j"$(nproc)"
install -d "$PREFIX/sbin"
install -m 0755 rpcapd/rpcapd "$PREFIX/sbin/rpcapd"
"$PREFIX/sbin/rpcapd" -h 2>&1 | head -2 || true
echo "build-rpcapd.sh: installed $PREFIX/sbin/rpcapd"
