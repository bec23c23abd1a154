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
  # the lab's Uptime Kuma: node-gyp builds its SQLite driver (with make and python3 above)
  g++
  # promtool: the tests check contrib/prometheus/restoredrill.rules.yml and a lab run's metrics.prom
  # (the Prometheus server in the package is never started: policy-rc.d below, and disabled after)
  prometheus
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
  # Only promtool is wanted: keep the Prometheus server from starting at the next boot too.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install -q --disable-pip-version-check -e "$here[test,lab]"

# --- Uptime Kuma for the lab and the monitoring drill tests -----------------------------
# The npm build of Kuma (one exists: 2.0.0-dev.0) into $RESTOREDRILL_KUMA_DIR (default .kuma/).
KUMA_VERSION="2.0.0-dev.0"
kuma_dir="${RESTOREDRILL_KUMA_DIR:-$here/.kuma}"
kuma_app="$kuma_dir/node_modules/uptime-kuma"
kuma_sqlite="$kuma_dir/node_modules/@louislam/sqlite3"
kuma_sqlite_built() {   # node-pre-gyp installs the module under lib/binding/napi-vN-<platform>/
  compgen -G "$kuma_sqlite/lib/binding/napi-v*/node_sqlite3.node" >/dev/null
}
# Keep any Node.js that is there (nodesource's ships npm itself: Debian's npm would conflict).
if ! command -v node >/dev/null 2>&1; then
  echo "kuma: installing nodejs and npm (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
elif ! command -v npm >/dev/null 2>&1; then
  echo "kuma: installing npm (apt)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
fi
if [ ! -f /usr/include/node/node.h ]; then   # node-gyp cannot download headers here: use the distro's
  echo "kuma: installing Node.js headers (apt libnode-dev)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libnode-dev
fi
kuma_app_installed() {
  [ -f "$kuma_app/server/server.js" ] && grep -q "\"version\": \"$KUMA_VERSION\"" "$kuma_app/package.json"
}
kuma_patches_missing() {
  local patch
  for patch in "$kuma_app"/db/patch-*.sql; do
    [ -e "$patch" ] || continue
    [ -e "$kuma_app/db/old_migrations/$(basename "$patch")" ] || return 0
  done
  return 1
}
if kuma_app_installed && kuma_sqlite_built && ! kuma_patches_missing; then
  echo "kuma: uptime-kuma@$KUMA_VERSION already installed in $kuma_dir"
else
  mkdir -p "$kuma_dir"
  if ! kuma_app_installed; then
    echo "kuma: npm install uptime-kuma@$KUMA_VERSION into $kuma_dir (a few minutes)"
    # npm does not run @louislam/sqlite3's install script for this package: built below.
    npm install --prefix "$kuma_dir" --no-audit --no-fund --no-progress --loglevel=error \
      "uptime-kuma@$KUMA_VERSION" >/dev/null
  fi
  if ! kuma_sqlite_built; then
    echo "kuma: building its SQLite driver (@louislam/sqlite3, about 90 s; log $kuma_dir/sqlite3-build.log)"
    # --nodedir: the headers of the installed Node.js (node-gyp cannot download them offline).
    if ! (cd "$kuma_sqlite" && ../../.bin/node-pre-gyp install --fallback-to-build --build-from-source \
          --nodedir=/usr) >"$kuma_dir/sqlite3-build.log" 2>&1; then
      tail -n 20 "$kuma_dir/sqlite3-build.log" >&2
      echo "kuma: building @louislam/sqlite3 failed (full log: $kuma_dir/sqlite3-build.log)" >&2
      exit 1
    fi
  fi
  # Packaging defect of the npm build 2.0.0-dev.0: its SQL patches sit in db/, but
  # server/database.js applies them with importSQLFile("./db/old_migrations/" + sqlFilename),
  # so the first start dies "issue patching the database" without them there.
  echo "kuma: copying db/patch-*.sql missing from db/old_migrations/ (packaging fix)"
  mkdir -p "$kuma_app/db/old_migrations"
  for patch in "$kuma_app"/db/patch-*.sql; do
    [ -e "$patch" ] || continue
    target="$kuma_app/db/old_migrations/$(basename "$patch")"
    [ -e "$target" ] || cp "$patch" "$target"
  done
fi
