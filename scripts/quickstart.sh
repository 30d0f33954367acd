#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu checkout to a running banger:
# host packages, build, install + start both services, banger doctor, then
# banger vm run (builds the default image on first use, then a shell in a VM).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
OWNER="${SUDO_USER:-$(id -un)}"

echo "==> installing host packages"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  make git qemu-system-x86 e2fsprogs debootstrap debian-archive-keyring \
  iproute2 nftables openssh-client ca-certificates util-linux gpgv wget >/dev/null
# npm fetches mise for the default image; a Node.js install may bring its own.
command -v npm >/dev/null || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null

export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null; then
  echo "Go >= 1.26 is needed to build banger: install it and put it on PATH" >&2
  exit 1
fi

echo "==> building"
make build

echo "==> installing and starting the services (owner: $OWNER)"
extra=()
[ "$OWNER" = root ] && extra=(--allow-root)
$SUDO ./build/bin/banger system install --owner "$OWNER" "${extra[@]}"

echo "==> banger doctor"
banger doctor || true

echo "==> banger vm run"
exec banger vm run
