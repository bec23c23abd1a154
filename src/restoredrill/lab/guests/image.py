"""Root file systems for the lab's production guests (what the seeded backups hold).

A guest root is small: configuration, SysV init scripts, an sshd setup, a web app
with its SQLite database and a canary. Programs come from the host: at start the
host's ``/usr`` is bind-mounted read-only into the guest (Debian's merged /usr makes
/bin, /sbin and /lib symlinks into it), so the guest runs the host's sshd and
python3 without carrying them.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

WEB_PORT = 8080
CANARY_VALUE = "guest-canary-v1"
GUEST_PYTHON = "/usr/bin/python3"

INIT = f"""#!{GUEST_PYTHON}
# Guest init (pid 1 inside the guest): runs /etc/init.d/rcS, reaps children, and on
# SIGTERM stops every service it started, then exits.
import os, signal, subprocess, sys, time
def stop(*_):
    subprocess.run(["/bin/sh", "/etc/init.d/rcK"], check=False)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
subprocess.run(["/bin/sh", "/etc/init.d/rcS"], check=False)
open("/run/guest-ready", "w").write("ready\\n")
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        time.sleep(0.5)
"""

RCS = """#!/bin/sh
# start every enabled service in order
for script in /etc/rc2.d/S*; do [ -x "$script" ] && "$script" start; done
"""

RCK = """#!/bin/sh
for script in /etc/rc2.d/S*; do [ -x "$script" ] && "$script" stop; done
"""

SERVICE = """#!/bin/sh
# SysV init script for {name}
PIDFILE=/run/{name}.pid
case "$1" in
  start)
    {start}
    ;;
  stop)
    [ -f $PIDFILE ] && kill $(cat $PIDFILE) 2>/dev/null; rm -f $PIDFILE
    ;;
  status)
    if [ -f $PIDFILE ] && kill -0 $(cat $PIDFILE) 2>/dev/null; then
      echo "{name} is running"; exit 0
    fi
    echo "{name} is not running"; exit 3
    ;;
  restart) "$0" stop; "$0" start ;;
  *) echo "usage: $0 start|stop|status|restart"; exit 2 ;;
esac
"""

SSHD_START = ("/usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log && "
              "sleep 0.2")
WEB_START = (f"nohup {GUEST_PYTHON} /srv/app/web.py >/var/log/webapp.log 2>&1 & echo $! > $PIDFILE")

WEB_APP = f'''#!{GUEST_PYTHON}
"""The guest's app: serves its data from SQLite; /health fails visibly when the data is damaged."""
import http.server, json, sqlite3
DB = "/srv/app/app.sqlite"
def health():
    try:
        conn = sqlite3.connect(f"file:{{DB}}?mode=ro", uri=True)
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        canary = conn.execute("SELECT value FROM canary").fetchone()[0]
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        conn.close()
    except Exception as exc:
        return 500, {{"status": "error", "error": str(exc)}}
    if not ok or canary != "{CANARY_VALUE}":
        return 500, {{"status": "damaged", "canary": canary}}
    return 200, {{"status": "healthy", "items": items, "canary": canary}}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code, body = health() if self.path == "/health" else (200, {{"app": "restoredrill-lab"}})
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", {WEB_PORT}), Handler).serve_forever()
'''

SSHD_CONFIG = """Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile /root/.ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
"""


@dataclass(frozen=True)
class GuestSpec:
    hostname: str
    address_cidr: str          # what the guest's own network config says (VMs) / pct ip= (CTs)
    authorized_key: str        # public key allowed to log in over SSH (the drill's)
    items: int = 200
    host_key: Path | None = None   # private host key to install (default: a new one)


def build_rootfs(root: Path, spec: GuestSpec) -> None:
    """Write a guest's root file system into root (an empty folder)."""
    for sub in ("etc/ssh", "etc/init.d", "etc/rc2.d", "sbin", "etc/network", "root/.ssh", "srv/app", "run/sshd",
                "var/log", "tmp", "proc", "dev", "usr", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        os.symlink(target, root / link)
    os.symlink("../init", root / "sbin" / "init")   # a SysV guest: no systemd (testinfra looks here)
    os.chmod(root / "tmp", 0o1777)
    _write(root / "etc/hostname", spec.hostname + "\n")
    _write(root / "etc/hosts", f"127.0.0.1 localhost\n{spec.address_cidr.split('/')[0]} {spec.hostname}\n")
    _write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"
                                "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    _write(root / "etc/group", "root:x:0:\nnogroup:x:65534:\n")
    _write(root / "etc/shadow", "root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n", mode=0o600)
    _write(root / "etc/os-release", 'PRETTY_NAME="restoredrill lab guest"\nNAME="Debian GNU/Linux"\n'
                                    'ID=debian\nVERSION_ID="12"\n')
    _write(root / "etc/network/guest.json", json.dumps({"eth0": spec.address_cidr}) + "\n")
    _write(root / "etc/ssh/sshd_config", SSHD_CONFIG)
    host_key = root / "etc/ssh/ssh_host_ed25519_key"
    if spec.host_key is not None:
        shutil.copyfile(spec.host_key, host_key)
        shutil.copyfile(spec.host_key.with_suffix(".pub"), host_key.with_suffix(".pub"))
        os.chmod(host_key, 0o600)
    else:
        generate_host_key(host_key, spec.hostname)
    _write(root / "root/.ssh/authorized_keys", spec.authorized_key.strip() + "\n", mode=0o600)
    _write(root / "init", INIT, mode=0o755)
    _write(root / "etc/init.d/rcS", RCS, mode=0o755)
    _write(root / "etc/init.d/rcK", RCK, mode=0o755)
    _write(root / "etc/init.d/sshd", SERVICE.format(name="sshd", start=SSHD_START), mode=0o755)
    _write(root / "etc/init.d/webapp", SERVICE.format(name="webapp", start=WEB_START), mode=0o755)
    os.symlink("../init.d/sshd", root / "etc/rc2.d/S10sshd")
    os.symlink("../init.d/webapp", root / "etc/rc2.d/S20webapp")
    _write(root / "srv/app/web.py", WEB_APP, mode=0o755)
    _write(root / "srv/app/canary.txt", f"{CANARY_VALUE}\n")
    write_app_db(root / "srv/app/app.sqlite", spec.items)


def generate_host_key(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)


def write_app_db(path: Path, items: int) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE canary (value TEXT NOT NULL)")
        conn.execute("INSERT INTO canary VALUES (?)", (CANARY_VALUE,))
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, body TEXT)")
        conn.executemany("INSERT INTO items (name, body) VALUES (?, ?)",
                         [(f"item-{i}", "x" * 200) for i in range(items)])
    conn.close()


def make_ext4_image(root: Path, image: Path, size_mib: int = 16) -> None:
    """A real ext4 image holding root (``mke2fs -d``: no mount, no loop device)."""
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d", str(root), str(image),
                    f"{size_mib}M"], check=True, capture_output=True)


def unpack_ext4_image(image: Path, target: Path) -> None:
    """Read an ext4 image back into a folder (``debugfs rdump``: no mount needed)."""
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["debugfs", "-R", f"rdump / {target}", str(image)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"debugfs could not read {image}: {proc.stderr.strip()[-300:]}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    os.chmod(path, mode)
