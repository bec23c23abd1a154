"""The lab's offsite parts: the double's offsite PBS datastore in S3 (SeaweedFS) and
firewall exports on the box.

``OffsiteLab.start()`` (the Proxmox double must be running: the bucket holds ITS store):

1. starts SeaweedFS (HTTPS with a lab CA by default) with an admin and a read-only
   drill identity, creates the bucket with object lock (so versioning) and a default
   GOVERNANCE retention;
2. uploads the double's ``offsite`` datastore (local PBS layout on disk: ``.chunks/<hex4>/
   <digest>``, ``<type>/<id>/<time>/<file>``, group ``owner``/``notes``) into the bucket in
   the PBS 4 S3 layout (``<store>/.cnt/<type>/<id>/<time>/<file>``, ``<store>/.chunks/
   <hex4>/<digest>``, ``<store>/.in-use``), with parallel PUTs: the bucket is what the
   double's offsite store holds when the lab starts (as after a PBS 4 S3 datastore's sync);
3. makes the double's offsite datastore S3-backed: from then on its restores read the bucket
   (``attach_double_store``, ``lab.proxmox.store_s3``), through a chunk cache empty at start;
4. puts OPNsense exports on the storage box (plain, and encrypted in OPNsense's armored
   format) and authorizes the box's SFTP key read-only for that folder.

``write_pbs_datastore`` (a generated S3-layout datastore) stays for the unit tests and the
audit's own integration test, which need no double.

``fragments()`` returns ``(inventory_fragment, endpoints_fragment)`` for the site
lab to merge (``merge_fragment``). The drills never use the admin identity.
"""
from __future__ import annotations

import json
import os
import random
import secrets as pysecrets
import socket
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from restoredrill.lab.lifecycle import StartStop
from restoredrill import retention
from restoredrill.checks.opnsense import encrypt_export
from restoredrill.lab.seaweed import SeaweedServer, write_secret_file
from restoredrill.pbsformat import CryptConfig, DatastoreWriter, Layout

LAB_BUCKET = "restoredrill-offsite"
DOUBLE_STORE = "offsite"       # the double's datastore the bucket holds
LAB_STORE = DOUBLE_STORE       # its S3 store prefix: PBS uses the datastore name
LAB_TARGET = "lab-s3"
LAB_POLICY = {"keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 2}
LAB_ZONE = "Europe/Berlin"
LOCK_DAYS = 30
S3_CACHE_BYTES = 8 * 1024 * 1024     # the double's offsite chunk cache: smaller than one VM image
CHUNK_SIZE = 64 * 1024
VM_IMAGE_SIZE = 256 * 1024
CT_ARCHIVE_SIZE = 192 * 1024
EXPORTS_DIR = "exports"
FIREWALL = "fw1"
FIREWALL_DOMAIN = "lab.internal"
EXPORT_BOX = "lab-box-exports"


def plan_pbs_history(newest: datetime, zone: str, days: int = 730) -> list[datetime]:
    """Daily snapshot times for ``days`` days up to ``newest``, reduced to what a 7/4/12/2
    PBS prune keeps (oldest first)."""
    times = [newest - timedelta(days=i) for i in range(days, -1, -1)]
    points = [retention.Point(time=t) for t in times]
    decisions = retention.simulate_pbs(points, retention.Policy.from_mapping(LAB_POLICY), zone)
    return [d.point.time for d in decisions if d.keep]


def write_pbs_datastore(tree: Path, crypt: CryptConfig, vm_times: list[datetime],
                        ct_times: list[datetime], seed: int = 7) -> dict:
    """VM ``vm/100`` (disk image + config) and CT ``ct/101`` (pxar stream + config) snapshots."""
    rng = random.Random(seed)
    writer = DatastoreWriter(tree, layout="s3", store=LAB_STORE, precreate_chunk_dirs=False)
    image = bytearray(rng.randbytes(VM_IMAGE_SIZE))
    for step, when in enumerate(vm_times):
        start = (step % (VM_IMAGE_SIZE // CHUNK_SIZE)) * CHUNK_SIZE + 512
        image[start:start + 4096] = rng.randbytes(4096)       # a day's writes: one chunk changes
        config = (f"# lab VM\nboot: order=scsi0\ncores: 1\nmemory: 512\nname: app\n"
                  f"scsi0: local-zfs:vm-100-disk-0,size={VM_IMAGE_SIZE}\n").encode()
        writer.write_snapshot(None, "vm", "100", when, {"drive-scsi0.img.fidx": bytes(image),
                                                         "qemu-server.conf.blob": config},
                              crypt=crypt, chunk_size=CHUNK_SIZE)
    archive = bytearray(rng.randbytes(CT_ARCHIVE_SIZE))
    for when in ct_times:
        at = rng.randrange(0, CT_ARCHIVE_SIZE - 2048)
        archive[at:at + 2048] = rng.randbytes(2048)
        config = b"arch: amd64\nhostname: files\nmemory: 256\nrootfs: local-zfs:subvol-101-disk-0\n"
        writer.write_snapshot(None, "ct", "101", when, {"root.pxar.didx": bytes(archive),
                                                         "pct.conf.blob": config},
                              crypt=crypt, dynamic_avg_size=32 * 1024)
    return {"vm_snapshots": len(vm_times), "ct_snapshots": len(ct_times)}


def tree_objects(tree: Path) -> list[tuple[str, Path]]:
    return sorted((path.relative_to(tree).as_posix(), path) for path in tree.rglob("*") if path.is_file())


def upload_tree(client, bucket: str, tree: Path, workers: int = 8) -> tuple[int, int]:
    """Upload every file under ``tree`` with its relative path as the key (the lab's write side)."""
    objects = tree_objects(tree)

    def put(item):
        key, path = item
        data = path.read_bytes()
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return len(data)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        sizes = list(pool.map(put, objects))
    return len(objects), sum(sizes)


def store_objects(store_root: Path, store: str) -> list[tuple[str, Path]]:
    """(S3 key, file) for a datastore in the local PBS layout: ``.chunks/<hex4>/<digest>``
    -> ``<store>/.chunks/<hex4>/<digest>``, everything else (snapshot files, group
    ``owner``/``notes``, ``ns/.../``) -> ``<store>/.cnt/<path>``. The local store's own
    dot files (``.lock``, ``.gc-status``) and unfinished temporary files stay behind."""
    layout = Layout.s3(store)
    out = []
    for path in store_root.rglob("*"):
        if not path.is_file() or ".tmp_" in path.name:
            continue
        relative = path.relative_to(store_root).as_posix()
        if relative.startswith(".chunks/"):
            out.append((layout.chunk_prefix + relative[len(".chunks/"):], path))
        elif not relative.startswith("."):
            out.append((layout.content_key(relative), path))
    return sorted(out)


def upload_store(client, bucket: str, store_root: Path, store: str, workers: int = 10) -> tuple[int, int]:
    """Upload a local-layout PBS datastore into ``bucket`` in the PBS 4 S3 layout, plus the
    ``<store>/.in-use`` marker; parallel PUTs (the lab's write side, admin identity; 10
    workers: boto3's default connection pool)."""
    objects = store_objects(store_root, store)

    def put(item):
        key, path = item
        data = path.read_bytes()
        client.put_object(Bucket=bucket, Key=key, Body=data)
        return len(data)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        sizes = list(pool.map(put, objects))
    marker = json.dumps({"hostname": socket.gethostname()}).encode()
    client.put_object(Bucket=bucket, Key=Layout.s3(store).marker_key, Body=marker)
    return len(objects) + 1, sum(sizes) + len(marker)


def create_locked_bucket(client, bucket: str, days: int = LOCK_DAYS, mode: str = "GOVERNANCE") -> None:
    """A bucket with object lock (versioning comes with it) and a default retention."""
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}}})


# --- OPNsense exports ------------------------------------------------------------------------

def render_opnsense_config(when: datetime, *, hostname: str = FIREWALL, domain: str = FIREWALL_DOMAIN,
                           description: str = "scheduled export",
                           extra_rules: int = 0) -> bytes:
    """A small but complete OPNsense config.xml (the sections a restore needs)."""
    root = ET.Element("opnsense")
    _text(root, "theme", "opnsense")
    system = ET.SubElement(root, "system")
    for tag, value in (("optimization", "normal"), ("hostname", hostname), ("domain", domain),
                       ("timezone", "Europe/Berlin"), ("timeservers", "0.opnsense.pool.ntp.org"),
                       ("dnsallowoverride", "1")):
        _text(system, tag, value)
    group = ET.SubElement(system, "group")
    for tag, value in (("name", "admins"), ("gid", "1999"), ("scope", "system"), ("member", "0"),
                       ("priv", "page-all")):
        _text(group, tag, value)
    user = ET.SubElement(system, "user")
    for tag, value in (("name", "root"), ("descr", "System Administrator"), ("scope", "system"),
                       ("groupname", "admins"), ("uid", "0"),
                       ("password", "$2y$11$" + "l" * 53)):  # a placeholder, not a real hash
        _text(user, tag, value)
    webgui = ET.SubElement(system, "webgui")
    _text(webgui, "protocol", "https")
    ssh = ET.SubElement(system, "ssh")
    _text(ssh, "group", "admins")
    _text(ssh, "noauto", "1")
    interfaces = ET.SubElement(root, "interfaces")
    for name, device, address, subnet, descr in (("wan", "vtnet0", "dhcp", "", "WAN"),
                                                 ("lan", "vtnet1", "10.10.0.1", "24", "LAN"),
                                                 ("opt1", "vtnet2", "10.20.0.1", "24", "DMZ")):
        iface = ET.SubElement(interfaces, name)
        for tag, value in (("enable", "1"), ("if", device), ("descr", descr), ("ipaddr", address),
                           ("subnet", subnet)):
            _text(iface, tag, value)
    dhcpd = ET.SubElement(ET.SubElement(root, "dhcpd"), "lan")
    _text(dhcpd, "enable", "1")
    pool = ET.SubElement(dhcpd, "range")
    _text(pool, "from", "10.10.0.100")
    _text(pool, "to", "10.10.0.199")
    _text(ET.SubElement(root, "unbound"), "enable", "1")
    _text(ET.SubElement(ET.SubElement(root, "nat"), "outbound"), "mode", "automatic")
    # As a current OPNsense writes it (opnsense/core src/etc/config.xml.sample): no top-level
    # <version>; the default rules in the MVC section <OPNsense><Firewall><Filter><rules>,
    # rules made in the legacy pages (here the port forwards) in <filter>.
    filt = ET.SubElement(root, "filter")
    for i in range(extra_rules):
        rule = ET.SubElement(filt, "rule")
        for tag, value in (("type", "pass"), ("interface", "wan"), ("ipprotocol", "inet"),
                           ("descr", f"port forward {i}")):
            _text(rule, tag, value)
        _text(ET.SubElement(rule, "source"), "any", "")
        _text(ET.SubElement(rule, "destination"), "address", f"10.20.0.{10 + i}")
    opnsense = ET.SubElement(root, "OPNsense")
    firewall = ET.SubElement(opnsense, "Firewall")
    _text(firewall, "Alias", "")
    mvc_rules = ET.SubElement(ET.SubElement(firewall, "Filter", version="1.0.4"), "rules")
    for sequence, (action, iface, proto, source, destination, descr) in enumerate((
            ("pass", "lan", "inet", "lan", "any", "Default allow LAN to any rule"),
            ("pass", "lan", "inet6", "lan", "any", "Default allow LAN IPv6 to any rule"),
            ("pass", "opt1", "inet", "opt1", "any", "DMZ to internet"),
            ("block", "opt1", "inet", "opt1", "lan", "DMZ must not reach LAN")), start=1):
        rule = ET.SubElement(mvc_rules, "rule", uuid=f"6f1e0b52-{sequence:04d}-4c1d-9a51-0b7c4f1e0000")
        for tag, value in (("enabled", "1"), ("sequence", str(sequence)), ("action", action), ("quick", "1"),
                           ("interface", iface), ("direction", "in"), ("ipprotocol", proto),
                           ("protocol", "any"), ("source_net", source), ("destination_net", destination),
                           ("description", descr)):
            _text(rule, tag, value)
    revision = ET.SubElement(root, "revision")
    _text(revision, "username", "root@10.10.0.20")
    _text(revision, "time", f"{when.timestamp():.4f}")
    _text(revision, "description", description)
    ET.indent(root, space="  ")
    return b'<?xml version="1.0"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def _text(parent: ET.Element, tag: str, value: str) -> ET.Element:
    child = ET.SubElement(parent, tag)
    child.text = value
    return child


def export_name(when: datetime) -> str:
    return f"config-{FIREWALL}.{FIREWALL_DOMAIN}-{when.astimezone(timezone.utc):%Y%m%d%H%M%S}.xml"


def write_exports(root: Path, newest: datetime, passphrase: str) -> dict:
    """Plain and encrypted export histories; one old plain export carries a fresh mtime
    (touched by a copy job), so ordering by mtime alone would pick the wrong one."""
    plain_dir, enc_dir = root / "opnsense" / "plain", root / "opnsense" / "encrypted"
    for folder in (plain_dir, enc_dir):
        folder.mkdir(parents=True, exist_ok=True)
    times = [newest - timedelta(days=i) for i in range(4, -1, -1)]
    for step, when in enumerate(times):
        config = render_opnsense_config(when, description=f"scheduled export {step + 1}", extra_rules=step)
        _write_with_mtime(plain_dir / export_name(when), config, when)
        _write_with_mtime(enc_dir / export_name(when), encrypt_export(config, passphrase), when)
    touched = plain_dir / export_name(times[0])
    os.utime(touched, (time.time(), time.time()))
    return {"exports_per_folder": len(times), "newest_export": newest.isoformat(timespec="seconds")}


def _write_with_mtime(path: Path, data: bytes, when: datetime) -> None:
    path.write_bytes(data)
    os.utime(path, (when.timestamp(), when.timestamp()))


# --- the offsite lab ---------------------------------------------------------------------------

class OffsiteLab(StartStop):
    """SeaweedFS holding the double's offsite datastore + exports on the storage box."""

    def __init__(self, root: Path, box, double, *, https: bool = True, zone: str = LAB_ZONE,
                 store: str = DOUBLE_STORE):
        self.root = Path(root).resolve()
        self.box = box
        self.double = double
        self.store = store
        self.https = https
        self.zone = zone
        self.seaweed: SeaweedServer | None = None
        self.timings: dict[str, float] = {}
        self.facts: dict = {}
        self.key_fingerprint: str | None = None

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def exports_root(self) -> Path:
        return self.root / EXPORTS_DIR

    @property
    def store_root(self) -> Path:
        """The double's datastore on disk (local PBS layout) that the bucket mirrors."""
        return self.double.stores[self.store].root

    @property
    def passphrase_file(self) -> Path:
        return self.secrets_dir / "opnsense-export.pass"

    @property
    def pbs_key_file(self) -> Path:
        """The double's encryption key (its VM snapshots are encrypted with it)."""
        return self.double.key_file

    @property
    def target_name(self) -> str:
        return LAB_TARGET

    def upload(self, client, bucket: str) -> tuple[int, int]:
        """Put the double's offsite store into ``bucket`` (S3 layout); (objects, bytes)."""
        return upload_store(client, bucket, self.store_root, self.store)

    def start(self, newest: datetime | None = None) -> "OffsiteLab":
        started = time.monotonic()
        newest = newest or (datetime.now(timezone.utc) - timedelta(hours=2)).replace(second=0, microsecond=0)
        if self.store not in getattr(self.double, "stores", {}):
            raise RuntimeError(f"the offsite lab uploads the Proxmox double's datastore {self.store!r}: "
                               "start the double first")
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        self.seaweed = SeaweedServer(self.root / "seaweed", https=self.https).start()
        self.timings["seaweed_start"] = self.seaweed.ready_seconds or 0.0
        self.key_fingerprint = self.double.key_fingerprint
        infos = self.double.stores[self.store].snapshot_infos()
        self.facts.update(vm_snapshots=sum(i.backup_type == "vm" for i in infos),
                          ct_snapshots=sum(i.backup_type == "ct" for i in infos))
        mark = time.monotonic()
        admin = self.seaweed.client("admin")
        create_locked_bucket(admin, LAB_BUCKET)
        objects, size = self.upload(admin, LAB_BUCKET)
        self.facts.update(objects_uploaded=objects, bytes_uploaded=size)
        self.timings["upload"] = time.monotonic() - mark
        self.attach_double_store()
        write_secret_file(self.passphrase_file, pysecrets.token_urlsafe(18))
        self.facts.update(write_exports(self.exports_root, newest - timedelta(hours=1),
                                        self.passphrase_file.read_text().strip()))
        self.box.authorize_sftp(self.box.sftp_key_file.with_suffix(".pub"), self.exports_root,
                                read_only=True)
        self.timings["total"] = time.monotonic() - started
        return self

    def attach_double_store(self) -> None:
        """From now on the double's offsite datastore is S3-backed (PBS 4): its restores read
        the bucket through an empty, bounded chunk cache (``lab.proxmox.store_s3``), with the
        PBS server's own read-write identity (the admin one; the drills never get it)."""
        from restoredrill.lab.proxmox.store_s3 import S3CachedSource
        store = self.double.stores[self.store]
        source = S3CachedSource(self.seaweed.client("admin", retries=4, timeout=20), LAB_BUCKET,
                                Layout.s3(self.store).chunk_prefix, self.root / "pbs-s3-cache" / self.store,
                                S3_CACHE_BYTES)
        store.attach_s3(source)
        self.facts["offsite_store_backend"] = f"s3://{LAB_BUCKET}/{self.store} (chunk cache {S3_CACHE_BYTES:,} bytes)"

    def stop(self) -> None:
        if self.seaweed is not None:
            self.seaweed.stop()
            self.seaweed = None

    # --- descriptions ------------------------------------------------------------------------
    def s3_target(self) -> dict:
        sw = self.seaweed
        target = {
            "name": LAB_TARGET, "endpoint": sw.endpoint, "region": "us-east-1", "bucket": LAB_BUCKET,
            "store_prefix": LAB_STORE, "access_key": f"file:{sw.key_file('drill', 'access')}",
            "secret_key": f"file:{sw.key_file('drill', 'secret')}",
            "ca_file": str(sw.ca_file) if sw.ca_file else None, "egress_budget": "256MiB",
            "require_object_lock": True,
        }
        from restoredrill.inventory.model import S3Target
        # the double encrypts every snapshot (both guests, both copies) with the key its PVE
        # storages hold: the bucket holds only encrypted chunks, signed manifests of that key
        proposed = {"retention": LAB_TARGET, "rpo": LAB_TARGET, "encryption_required": True,
                    "key_fingerprint": self.key_fingerprint, "read_data_runs": 3}
        target.update({k: v for k, v in proposed.items() if k in S3Target.model_fields})
        return target

    def inventory_fragment(self) -> dict:
        box = self.box
        rpo = {"max_age": "25h", "grace": "3h"}
        return {
            "policies": {
                # named after the S3 target: how the offsite drill finds them until the schema
                # has offsite.s3[].retention/rpo (see fixtures/offsite.py)
                "retention": {LAB_TARGET: dict(LAB_POLICY)},
                "rpo": {LAB_TARGET: dict(rpo), "lab-config-export": {"max_age": "25h", "grace": "2h"}},
            },
            "offsite": {
                "s3": [self.s3_target()],
                "storage_boxes": [{"name": EXPORT_BOX, "host": box.host, "port": box.port, "user": box.user,
                                   "key_file": str(box.sftp_key_file),
                                   "known_hosts_file": str(box.known_hosts_file)}],
                "config_exports": [
                    {"name": "fw-plain", "kind": "opnsense", "storage_box": EXPORT_BOX,
                     "path_glob": "opnsense/plain/config-*.xml", "rpo": "lab-config-export"},
                    {"name": "fw-encrypted", "kind": "opnsense", "storage_box": EXPORT_BOX,
                     "path_glob": "opnsense/encrypted/config-*.xml",
                     "passphrase": f"file:{self.passphrase_file}", "rpo": "lab-config-export"},
                ],
            },
        }

    def endpoints_fragment(self) -> dict:
        sw = self.seaweed
        return {"s3": {"endpoint": sw.endpoint, "region": "us-east-1", "bucket": LAB_BUCKET,
                       "store_prefix": LAB_STORE, "access_key_file": str(sw.key_file("drill", "access")),
                       "secret_key_file": str(sw.key_file("drill", "secret")),
                       "ca_file": str(sw.ca_file) if sw.ca_file else None}}

    def fragments(self) -> tuple[dict, dict]:
        return self.inventory_fragment(), self.endpoints_fragment()


def setup_offsite(root: Path, box, double, *, newest: datetime | None = None, https: bool = True,
                  zone: str = LAB_ZONE) -> OffsiteLab:
    """Build and start the offsite lab over a RUNNING Proxmox double, whose ``offsite``
    datastore goes into the bucket (stop it with ``.stop()``)."""
    lab = OffsiteLab(root, box, double, https=https, zone=zone)
    try:
        return lab.start(newest)
    except BaseException:
        lab.stop()
        raise


def merge_fragment(base: dict, fragment: dict) -> dict:
    """Deep merge: mappings merge key by key, lists are concatenated, other values replaced."""
    merged = dict(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_fragment(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged
