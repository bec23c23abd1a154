"""The lab PVE node's SSH: an sshd on loopback whose one key may run only what the
shipped guard (contrib/restoredrill-pct-guard) allows: ``pct exec|status|stop`` on the
scratch VMID range, for containers with the drill tag in the drill pool (the guard
reads the double's ``etc-pve`` as it reads ``/etc/pve`` on a node), answered by
``lab.guests.pct``."""
from __future__ import annotations

import sys
from pathlib import Path

from restoredrill import contrib_dir
from restoredrill.lab.storagebox import StorageBox

SCRATCH = (9900, 9999)
DRILL = "restoredrill"        # the lab's drill tag and pool (homelab.DRILL_POOL, scratch.tag)


class NodeSsh:
    def __init__(self, base_dir: Path, work_dir: Path, pve_dir: Path, scratch: tuple[int, int] = SCRATCH, *,
                 tag: str = DRILL, pool: str = DRILL):
        self.box = StorageBox(base_dir)
        self.work_dir = work_dir
        self.pve_dir = pve_dir
        self.scratch = scratch
        self.tag, self.pool = tag, pool

    def start(self) -> "NodeSsh":
        self.box.start()
        pct = f"{sys.executable} -m restoredrill.lab.guests.pct --work {self.work_dir}"
        guard = contrib_dir() / "restoredrill-pct-guard"
        self.box.authorize_command(self.box.sftp_key_file.with_suffix(".pub"),
                                   [sys.executable, str(guard), "--first", str(self.scratch[0]),
                                    "--last", str(self.scratch[1]), "--tag", self.tag, "--pool", self.pool,
                                    "--pve-dir", str(self.pve_dir), "--pct", pct])
        return self

    @property
    def key_file(self) -> Path:
        return self.box.sftp_key_file

    def endpoint(self) -> dict:
        return {"host": self.box.host, "port": self.box.port, "user": self.box.user,
                "key_file": str(self.key_file), "known_hosts_file": str(self.box.known_hosts_file)}

    def stop(self) -> None:
        self.box.stop()
