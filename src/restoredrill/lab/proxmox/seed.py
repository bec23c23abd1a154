"""Back-dated PBS history of the homelab's guests, written in the real PBS format.

Guests: VM 110 ``app-vm`` (an ext4 image made with ``mke2fs -t ext4 -d``: busybox-static,
an init script, a canary file and a small SQLite database) and CT 120 ``app-ct`` (the same
root filesystem as a real pxar archive, ``lab/pxarwrite.py``: ``root.pxar.didx``, but the
newest local snapshot holds the split ``root.mpxar.didx`` + ``root.ppxar.didx`` PBS 3.3+
writes with change detection mode ``metadata``, so the lab restores both forms). Every backup of both, in both datastores, is encrypted with
the lab key, the one the PVE storages hold (``encryption-key`` of a PBS storage); the
escrowed copy of it is a separate file (``ProxmoxDouble.escrow_key_file``).
Configs in ``qemu-server.conf.blob`` / ``pct.conf.blob`` are realistic production ones
(vmbr0 with a MAC, onboot, a mapped hostpci0, a bind mount, raw lxc keys; no hookscript:
the drill token could not remove one, so the harness refuses to start such a guest)
so the harness's isolation overrides have something to remove.

History: a backup every day at 01:00 UTC. Only the snapshots a 7/4/12/2 PBS prune of
about two years of dailies keeps are created in the offsite store, plus a few it
removes; the last days go to the local store (keep-last 2). The double's jobs then
prune, sync and prune again with the real engine, and ``check_history`` compares.
"""
from __future__ import annotations

import random
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from restoredrill import retention
from restoredrill.execute import run
from restoredrill.lab.guests.image import GuestSpec, generate_host_key
from restoredrill.lab.guests.image import build_rootfs as build_guest_root
from restoredrill.lab.proxmox.ct_archive import CT_ARCHIVE, CT_META_ARCHIVE, CT_PAYLOAD_ARCHIVE
from restoredrill.lab.pxarwrite import encode, tree_of_directory, tree_of_files
from restoredrill.lab.proxmox.store import PbsStore
from restoredrill.lab.proxmox.store_ops import copy_snapshot
from restoredrill.pbsformat import CryptConfig, SnapshotRef

OFFSITE_POLICY = {"keep-daily": 7, "keep-weekly": 4, "keep-monthly": 12, "keep-yearly": 2}
LOCAL_POLICY = {"keep-last": 2}
IMAGE_SIZE = "16M"
CT_CHUNK_AVG = 16 * 1024 * 1024   # a ~2 MiB CT archive stays one chunk (no slow scan)
CANARY = "srv/app/.restoredrill-canary"
SQLITE = "srv/app/app.sqlite"
FIXED_UUID = "5eed0000-0000-4000-8000-000000000110"
BACKUP_OWNER = "root@pam"

VM_CONFIG = """#Application VM (production)
agent: 1
boot: order=scsi0;net0
cores: 2
cpu: x86-64-v2-AES
hostpci0: mapping=nic-offload,pcie=1
memory: 2048
name: app-vm
net0: virtio=BC:24:11:5E:A0:10,bridge=vmbr0,firewall=1
onboot: 1
ostype: l26
scsi0: local-zfs:vm-110-disk-0,iothread=1,size=16M
scsihw: virtio-scsi-single
smbios1: uuid=8d2b2a9e-5b1f-4c1e-9a51-0b7c4f1e0110
sockets: 1
startup: order=2,up=30
tags: app;prod
vmgenid: 3f1c2e4a-7b9d-4e21-8c55-6a0d9e8f0110
#qmdump#map:scsi0:drive-scsi0:local-zfs:raw:
"""
CT_CONFIG = """arch: amd64
cores: 1
features: nesting=1
hostname: app-ct
memory: 512
mp0: /srv/media,mp=/mnt/media,backup=0
net0: name=eth0,bridge=vmbr0,firewall=1,gw=10.199.0.1,hwaddr=BC:24:11:5E:A0:20,ip=10.199.0.120/24,type=veth
onboot: 1
ostype: debian
rootfs: local-zfs:subvol-120-disk-0,size=1G
startup: order=3
swap: 512
tags: app;prod
unprivileged: 1
lxc.cgroup2.devices.allow: c 10:200 rwm
"""
OPNSENSE_CONFIG = """boot: order=scsi0
cores: 2
hostpci0: mapping=wan-nic,pcie=1
memory: 4096
name: opnsense
net0: virtio=BC:24:11:5E:A0:01,bridge=vmbr0
onboot: 1
ostype: other
scsi0: local-zfs:vm-100-disk-0,size=32G
startup: order=1
tags: firewall;prod
"""
@dataclass(frozen=True)
class SeedGuest:
    vmid: int
    kind: str            # "vm" or "ct"
    hostname: str
    config: str
    minute: int          # backups start at 01:<minute>:03 UTC
    address: str = ""    # what the guest's network config says (VM: inside its disk)

    @property
    def conf_blob(self) -> str:
        return "qemu-server.conf.blob" if self.kind == "vm" else "pct.conf.blob"


SEED_GUESTS = (SeedGuest(110, "vm", "app-vm", VM_CONFIG, 0, "10.199.0.110/24"),
               SeedGuest(120, "ct", "app-ct", CT_CONFIG, 1, "10.199.0.120/24"))


@dataclass(frozen=True)
class GuestAccess:
    """The drill's SSH key (authorized in every guest) and the guests' pinned host keys."""
    folder: Path

    @classmethod
    def create(cls, secrets: Path) -> "GuestAccess":
        access = cls(secrets / "guest-ssh")
        access.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        generate_host_key(access.key_file, "restoredrill-drill")
        lines = []
        for guest in SEED_GUESTS:
            generate_host_key(access.host_key(guest), guest.hostname)
            public = access.host_key(guest).with_suffix(".pub").read_text().split()[:2]
            lines.append(f"{guest.address.split('/')[0]} {' '.join(public)}")
        access.known_hosts_file.write_text("\n".join(lines) + "\n")
        return access

    @property
    def key_file(self) -> Path:
        return self.folder / "drill_ed25519"

    @property
    def known_hosts_file(self) -> Path:
        return self.folder / "known_hosts"

    def host_key(self, guest: SeedGuest) -> Path:
        return self.folder / f"host_{guest.vmid}_ed25519"

    def spec(self, guest: SeedGuest) -> GuestSpec:
        return GuestSpec(guest.hostname, guest.address, self.key_file.with_suffix(".pub").read_text(),
                         host_key=self.host_key(guest))


def backup_time(day: datetime, guest: SeedGuest) -> datetime:
    return day.replace(hour=1, minute=guest.minute, second=3, microsecond=0)


def plan_history(newest_day: datetime, zone: str, days: int = 730, extras: int = 4,
                 seed: int = 1) -> tuple[list[datetime], set[datetime]]:
    """Days to create (oldest first) and the subset a 7/4/12/2 prune keeps."""
    all_days = [newest_day - timedelta(days=i) for i in range(days, -1, -1)]
    points = [retention.Point(time=d) for d in all_days]
    policy = retention.Policy.from_mapping(OFFSITE_POLICY)
    kept = {d.point.time for d in retention.simulate_pbs(points, policy, zone) if d.keep}
    removed = [d for d in all_days[-90:] if d not in kept]
    extra = set(random.Random(seed).sample(removed, min(extras, len(removed))))
    return sorted(kept | extra), kept


def build_rootfs(root: Path, guest: SeedGuest, access: GuestAccess) -> None:
    """The guest's root file system (see ``lab.guests.image``: SysV services, sshd, a web
    app over SQLite, a canary) plus a table that records every backup."""
    build_guest_root(root, access.spec(guest))
    connection = sqlite3.connect(root / SQLITE)
    with connection:
        connection.execute("CREATE TABLE IF NOT EXISTS backups (id INTEGER PRIMARY KEY, "
                           "taken TEXT NOT NULL)")
    connection.close()


def stamp(root: Path, when: datetime) -> str:
    """Write the canary and one database row for this backup time; returns the canary."""
    text = f"canary {when.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
    (root / CANARY).write_text(text + "\n")
    connection = sqlite3.connect(root / SQLITE)
    with connection:
        connection.execute("INSERT INTO backups (taken) VALUES (?)", (text,))
    connection.close()
    return text


def make_ext4_image(source: Path, image: Path, when: datetime) -> bytes:
    """``mke2fs -t ext4 -d`` with a fixed UUID and clock, so unchanged blocks dedup."""
    image.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-U", FIXED_UUID, "-E",
         f"hash_seed={FIXED_UUID},root_owner=0:0", "-L", "rootfs", "-d", str(source),
         str(image), IMAGE_SIZE], timeout=60,
        extra_env={"E2FSPROGS_FAKE_TIME": str(int(when.timestamp()))}, label="seed mke2fs")
    return image.read_bytes()


def pxar_archives(tree, *, split: bool = False) -> dict[str, bytes]:
    """A container snapshot's archive files for the pxar of ``tree``: ``root.pxar.didx``,
    or ``root.mpxar.didx`` + ``root.ppxar.didx`` when ``split``."""
    meta, payload = encode(tree, split=split)
    return {CT_META_ARCHIVE: meta, CT_PAYLOAD_ARCHIVE: payload} if split else {CT_ARCHIVE: meta}


def make_pxar(source: Path, when: datetime, *, split: bool = False) -> dict[str, bytes]:
    """The pxar archive(s) of ``source`` (owner root, mtime = backup time)."""
    return pxar_archives(tree_of_directory(source, int(when.timestamp()) * 1_000_000_000), split=split)


def make_pxar_of(files: dict[str, bytes], when: datetime) -> dict[str, bytes]:
    """``root.pxar.didx`` holding ``files`` ('a/b' paths)."""
    return pxar_archives(tree_of_files(files, int(when.timestamp()) * 1_000_000_000))


def write_guest_snapshot(store: PbsStore, guest: SeedGuest, workdir: Path, when: datetime,
                         crypt: CryptConfig | None, access: GuestAccess, ns: str | None = None,
                         split: bool = False) -> SnapshotRef:
    root = workdir / "rootfs"
    if not root.exists():
        build_rootfs(root, guest, access)
    canary = stamp(root, when)
    archives = {guest.conf_blob: guest.config.encode()}
    if guest.kind == "vm":
        archives["drive-scsi0.img.fidx"] = make_ext4_image(root, workdir / "image.raw", when)
    else:
        archives.update(make_pxar(root, when, split=split))
    return store.writer(BACKUP_OWNER).write_snapshot(
        ns, guest.kind, str(guest.vmid), when, archives, crypt=crypt,
        dynamic_avg_size=CT_CHUNK_AVG, notes=f"{guest.hostname}: {canary}")


def seed_history(local: PbsStore, offsite: PbsStore, workdir: Path, newest_day: datetime,
                 zone: str, crypt: CryptConfig | None, access: GuestAccess, local_days: int = 3,
                 unsynced: int = 2, offsite_ns: str | None = None) -> dict[str, object]:
    """Offsite (in namespace ``offsite_ns``, where the sync job writes): the planned history;
    local: the last ``local_days`` (all but the newest ``unsynced`` already copied to
    offsite, as earlier sync runs would have)."""
    days, kept = plan_history(newest_day, zone)
    recent = [newest_day - timedelta(days=i) for i in range(local_days - 1, -1, -1)]

    def seed_guest(guest: SeedGuest) -> None:
        guest_dir = workdir / guest.hostname
        shutil.rmtree(guest_dir, ignore_errors=True)
        key = crypt      # both guests, both copies: PVE encrypts with the storage's key (issue 23)
        for day in days:
            if day < recent[0]:
                write_guest_snapshot(offsite, guest, guest_dir, backup_time(day, guest), key, access,
                                     ns=offsite_ns)
        for day in recent:     # the newest after the upgrade to PBS 3.3+ (metadata mode): split pxar
            write_guest_snapshot(local, guest, guest_dir, backup_time(day, guest), key, access,
                                 split=day == recent[-1])
        writer = offsite.writer(BACKUP_OWNER)
        for day in recent[:-unsynced]:
            epoch = int(backup_time(day, guest).timestamp())
            copy_snapshot(local, offsite, writer, local.find(guest.kind, str(guest.vmid), epoch),
                          target_ns=offsite_ns)

    with ThreadPoolExecutor(max_workers=len(SEED_GUESTS)) as pool:
        list(pool.map(seed_guest, SEED_GUESTS))
    seed_lookalikes(local, recent, crypt)
    shutil.rmtree(workdir, ignore_errors=True)
    return {"planned_days": len(days), "kept_days": sorted(kept), "recent_days": recent}


RETIRED_CT = SeedGuest(110, "ct", "old-ct", "arch: amd64\nhostname: old-ct\nmemory: 256\n"
                       "ostype: debian\nrootfs: local-zfs:subvol-110-disk-0,size=1G\n", 30)


def seed_lookalikes(local: PbsStore, recent: list[datetime], crypt: CryptConfig | None = None) -> None:
    """What a client that ignores the backup type or the manifest would pick by mistake:
    ``ct/110`` (a retired container whose VMID the app VM reuses; PBS lists it with vm/110
    for backup-id 110, api2/admin/datastore.rs ``list_snapshots``) newer than every vm/110
    snapshot, and an unfinished newest ``ct/120`` (a backup still running: archives, no
    ``index.json.blob``; PVE lists it with size 1, PBSPlugin ``list_volumes``)."""
    writer = local.writer(BACKUP_OWNER)
    for day in recent[-2:]:
        when = backup_time(day, RETIRED_CT)
        writer.write_snapshot(None, "ct", "110", when, {
            "pct.conf.blob": RETIRED_CT.config.encode(), **make_pxar_of({"etc/hostname": b"old-ct\n"}, when)},
            crypt=crypt, notes="old-ct: retired, VMID reused by app-vm")
    ct = SEED_GUESTS[1]
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    running = min(backup_time(recent[-1], ct) + timedelta(hours=1), now).replace(microsecond=0)
    writer.write_unfinished_snapshot(None, "ct", str(ct.vmid), running, {
        "pct.conf.blob": ct.config.encode(), **make_pxar_of({"partial": b"backup running\n"}, running)},
        crypt=crypt)


def check_history(offsite: PbsStore, kept_days: list[datetime], ns: str | None = None) -> None:
    """After the jobs ran: the offsite store (namespace ``ns``) holds exactly what the engine
    predicted."""
    for guest in SEED_GUESTS:
        found = {i.backup_time for i in offsite.snapshot_infos(guest.kind, str(guest.vmid), ns)}
        expected = {backup_time(day, guest) for day in kept_days}
        if found != expected:
            raise RuntimeError(f"offsite {guest.kind}/{guest.vmid}: prune kept "
                               f"{sorted(found ^ expected)} differently from the engine")


def newest_backup_day(now: datetime | None = None) -> datetime:
    """Today 00:00 UTC if today's 01:00 run is done, else yesterday. Done means every seeded
    snapshot of the day (the latest, ``RETIRED_CT``'s, at 01:30) lies in the past: a lab
    built at 01:10 must not list a backup from 20 minutes in the future."""
    now = now or datetime.now(timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    last = max(g.minute for g in (*SEED_GUESTS, RETIRED_CT))
    return day if now >= day.replace(hour=1, minute=last + 5) else day - timedelta(days=1)
