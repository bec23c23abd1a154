"""First process of a lab guest, run inside fresh mount/pid/uts/ipc namespaces (and the
guest's network namespace): prepares the guest's view, then chroots and execs /init.

    python -m restoredrill.lab.guests.boot ROOT HOSTNAME [--configure-network]

The host's /usr is bind-mounted read-only; /proc is the guest's own; /dev holds only
null, zero, random and urandom. Nothing of this is visible outside the guest's
private mount namespace.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

DEVICES = ("null", "zero", "random", "urandom")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def prepare(root: Path, hostname: str, configure_network: bool) -> None:
    socket.sethostname(hostname)
    mount("--make-rprivate", "/")
    mount("--bind", "/usr", str(root / "usr"))
    mount("-o", "remount,bind,ro", str(root / "usr"))
    mount("-t", "proc", "proc", str(root / "proc"))
    for name in DEVICES:
        target = root / "dev" / name
        target.touch(exist_ok=True)
        mount("--bind", f"/dev/{name}", str(target))
    mount("-t", "tmpfs", "-o", "size=16m,mode=1777", "tmpfs", str(root / "tmp"))
    if configure_network:
        configure_eth0(root)


def configure_eth0(root: Path) -> None:
    """What a VM's own OS does at boot: take the address from its network config."""
    config = root / "etc" / "network" / "guest.json"
    if config.is_file():
        address = json.loads(config.read_text()).get("eth0")
        if address:
            subprocess.run(["ip", "addr", "add", address, "dev", "eth0"], check=False)
            subprocess.run(["ip", "link", "set", "eth0", "up"], check=False)


def main(argv: list[str]) -> None:
    root, hostname = Path(argv[0]), argv[1]
    prepare(root, hostname, "--configure-network" in argv)
    os.chroot(root)
    os.chdir("/")
    os.execve("/init", ["/init"], {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                   "HOME": "/root", "LANG": "C.UTF-8"})


if __name__ == "__main__":
    main(sys.argv[1:])
