#!/usr/bin/env bash
# Installs everything restoredrill, its lab and its tests need on a bare Debian/Ubuntu
# machine: system packages (without letting apt start any service) and the Python
# package with its test extras. Idempotent; run as root (or with sudo available).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  # build libraries for borgbackup from PyPI
  libssl-dev liblz4-dev libzstd-dev libxxhash-dev libacl1-dev pkg-config gcc python3-dev
  # the storage box (sshd) and throwaway PostgreSQL servers for dump restores
  openssh-server openssh-client postgresql sqlite3 openssl
  # the sandbox for untrusted restored data (psql, PostgreSQL, SQLite): bwrap; python3 runs the SQLite probe
  bubblewrap
  # scratch guests: namespaces, ext4 images, a tiny static userland
  iproute2 e2fsprogs busybox-static util-linux procps make python3-venv python3
  # headless browser for the HTML report test (Debian's real package, not Ubuntu's snap wrapper)
  chromium
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # Keep apt from starting sshd/postgresql on the host: the tests start their own.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ "$created_policy" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install -q --disable-pip-version-check -e "$here[test,lab]"
