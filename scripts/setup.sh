#!/usr/bin/env bash
# Provisions a Debian machine for building and testing voxtap (run as root).
# Idempotent and non-interactive: safe to re-run; only installs what is missing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (apt-get, XDP tests)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# tshark would otherwise ask whether non-root users may capture.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections

PACKAGES=(
    tshark tcpdump sip-tester sngrep tcpreplay iproute2 sox espeak-ng bpftool ethtool
    libpcap-dev libopus-dev llvm-22-dev libzstd-dev zlib1g-dev flex bison dpkg-dev
    # Codec libraries (capture/codecs) and the reference codecs its tests run.
    libopencore-amrnb-dev libopencore-amrwb-dev libvo-amrwbenc-dev libgsm1-dev libspeex-dev
    libbcg729-dev libspandsp-dev ffmpeg
    chromium chromium-driver
    # Real SIP UAs for the TLS + SDES-SRTP test (tests/tests/e2e/transports/tls.rs).
    baresip-core
    openssl libssl-dev ca-certificates
    # The fleet's central index (capture/sensor/src/central): the tests start
    # their own throw-away PostgreSQL 15 cluster (tests/kit/src/pg.rs) and
    # never use the system one the package may start.
    postgresql-15 postgresql-client-15
)
# The web TLS test makes a self-signed certificate with the openssl CLI.
PACKAGES+=(openssl)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Rust: rust-src for -Z build-std=core (the XDP program), clippy/rustfmt for CI.
rustup component add rust-src clippy rustfmt
# macOS target for the type-check of the capture crate in `cargo xtask test`.
rustup target add x86_64-apple-darwin

# bpf-linker 0.13.0 against Debian's LLVM 22 (links the XDP program).
if [ "$(bpf-linker --version 2>/dev/null || true)" != "bpf-linker 0.13.0" ]; then
    LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
        cargo install bpf-linker@0.13.0 --locked --no-default-features --features llvm-22
fi

bash "$(dirname "$0")/build-rpcapd.sh"  # rpcapd for the remote-capture tests (Debian ships none)
# An independent SRTP implementation (libsrtp's Python binding) for the
# cross-check in tests/tests/e2e/media.rs.
if ! python3 -c "import pylibsrtp" >/dev/null 2>&1; then
    python3 -m pip install --quiet pylibsrtp
fi

# The WebSocket peers of tests/peers/ws_sip.py (SIP over WS and WSS in
# tests/tests/e2e/transports/ws.rs): websockets >= 13 has the asyncio API it uses.
if ! python3 -c "import websockets.asyncio.client" >/dev/null 2>&1; then
    python3 -m pip install --quiet "websockets>=13"
fi

# An SMTP sink for the alert tests (web/tests/web/alerts.rs).
if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
    python3 -m pip install --quiet aiosmtpd
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# s3s-fs: a real S3 API server (SigV4, checksums) for the upload tests in
# capture/cli/tests/sensor/s3.rs. 0.14.1 is the newest that builds with rustc 1.95.
if [ "$(s3s-fs --version 2>/dev/null || true)" != "s3s-fs 0.14.1" ] && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
    cargo install s3s-fs@0.14.1 --locked --features binary
fi

echo "setup.sh: done"
