"""The inventory schema: one pydantic model per section, every key described.

The example inventory (inventory/example-homelab.yaml) documents every key of
this schema; a test checks that it does. Unknown keys are errors, so a typo never
silently turns a check off.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from restoredrill.inventory.monitoring import Monitoring, check_endpoint
from restoredrill.inventory.types import Duration, KeyFingerprint, Secret, Size, TimeZone, TlsFingerprint

NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
DrillKind = Literal["borg", "pbs", "offsite", "lint", "monitoring"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --- site and policies -------------------------------------------------------------

class Site(Strict):
    name: str = Field(description="Name of the site, shown in reports.")
    timezone: TimeZone = Field("UTC", description="IANA time zone of the site; PBS prunes in the "
                                                  "server's zone, Borg in the client's.")


class RetentionPolicy(Strict):
    keep_last: int | None = Field(None, ge=0, le=100000, description="Keep the N newest points.")
    keep_hourly: int | None = Field(None, ge=0, le=100000, description="Newest point of N hours.")
    keep_daily: int | None = Field(None, ge=0, le=100000, description="Newest point of N days.")
    keep_weekly: int | None = Field(None, ge=0, le=100000, description="Newest point of N ISO weeks.")
    keep_monthly: int | None = Field(None, ge=0, le=100000, description="Newest point of N months.")
    keep_yearly: int | None = Field(None, ge=0, le=100000, description="Newest point of N years.")
    keep_within: str | None = Field(None, pattern=r"^\d+[Hdwmy]$",
                                    description="Borg only: keep everything newer than this (e.g. 2d).")

    def options(self) -> dict[str, object]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class RpoPolicy(Strict):
    max_age: Duration = Field(description="Newest restore point must be younger than this (the RPO).")
    grace: Duration = Field("0s", description="Extra slack for a job that runs late.")


class Policies(Strict):
    retention: dict[str, RetentionPolicy] = Field(
        default_factory=dict, description="Named retention policies (keep-* counts as the engines use them).")
    rpo: dict[str, RpoPolicy] = Field(default_factory=dict, description="Named RPO policies.")


# --- scratch area ------------------------------------------------------------------

class Budgets(Strict):
    max_parallel: int = Field(2, ge=1, le=64, description="Scratch guests restored at the same time.")
    max_memory: Size = Field("8GiB", description="RAM all scratch guests may use together.")
    max_disk: Size = Field("200GiB", description="Scratch storage all drills may use together.")
    max_run_time: Duration = Field("2h", description="Time budget of one run.")
    # interpreting restored data (issue 20): defaults fit a 2-core, 4 GiB runner
    parse_memory: Size = Field("1GiB", description="Address space of the sandboxed loader that lexes and "
                               "sends a plain SQL dump (about 150 bytes per dump byte in the worst case).")
    statement_timeout: Duration = Field("10m", description="Wall time of one statement of a dump.")
    check_timeout: Duration = Field("30m", description="Wall time of one check that interprets restored "
                                    "data: a dump's whole load, an SQLite integrity check.")
    output: Size = Field("16MiB", description="What a sandboxed program reading restored data may print "
                         "(query results); more fails the check.")
    sandbox_tmpfs: Size = Field("64MiB", description="Size of each RAM-backed /tmp and /dev/shm inside the "
                                "sandbox.")


class Scratch(Strict):
    vmid_range: tuple[int, int] = Field((9900, 9999), description="First and last VMID the harness may "
                                        "create, change or destroy. Nothing outside it is ever touched.")
    pool: str = Field("restoredrill", description="PVE pool holding every scratch guest.")
    tag: str = Field("restoredrill", pattern=r"^[a-z0-9_][a-z0-9_.+-]*$",
                     description="Tag every scratch guest carries; checked before every destructive call.")
    bridge: str = Field("vmbr-drill", description="Isolated bridge (no ports, no address) for scratch guests.")
    storage: str = Field("local-zfs", description="PVE storage scratch guests are restored onto.")
    work_dir: str | None = Field(None, description="Directory for Borg extracts (default: the system temp dir).")
    min_free: Size = Field("1GiB", description="Free space that must remain after an extract.")
    expiry: Duration = Field("6h", description="A scratch guest older than this is reaped by the next run.")
    budgets: Budgets = Field(default_factory=Budgets, description="Limits for concurrent drills.")
    restore_timeout: Duration = Field("1h", description="Deadline of one restore task.")
    boot_timeout: Duration = Field("5m", description="From start until the guest answers (agent, SSH, pct).")
    runner_netns: str | None = Field(None, description="Network namespace holding the runner's leg on the drill "
                                     "bridge, with no other route. Required by access: ssh and from_runner checks "
                                     "(they reach the guest by its address, production's too); the drill proves "
                                     "its routes and the answering MAC before and after every such contact.")
    guest_ssh: "SshLogin | None" = Field(None, description="Login for access: ssh (drill key, pinned host keys).")

    @model_validator(mode="after")
    def _range_ordered(self) -> "Scratch":
        low, high = self.vmid_range
        if not 100 <= low <= high <= 999999999:
            raise ValueError("vmid_range must be [first, last] with 100 <= first <= last")
        return self


class SshLogin(Strict):
    user: str = Field("root", description="Login user in the scratch guest.")
    key_file: str = Field(description="Private key of the drill (path).")
    known_hosts_file: str = Field(description="known_hosts pinning the guests' host keys (strict checking).")


class KeyEscrow(Strict):
    location: str = Field(description="Where the key material of this encrypted copy is held (free text, "
                          "e.g. the owner's password manager and a paper copy in a safe).")
    outside_site: bool = Field(False, description="True when that place survives the loss of the whole site "
                               "(and of the infrastructure the copy protects).")
    key_file: str | None = Field(None, description="Path to the escrowed copy the key-proof drill reads: "
                                 "for Borg the `borg key export` file or the keyfile, for PBS the key file.")


# --- Proxmox -----------------------------------------------------------------------

class PveEndpoint(Strict):
    url: str = Field(description="PVE API base URL, e.g. https://pve1.lan:8006 (no credentials in it).")
    token_id: str = Field(pattern=r"^[^@!\s]+@[^@!\s]+![^@!\s]+$",
                          description="API token id user@realm!name, limited to the drill pool.")
    token_secret: Secret = Field(description="Reference to the token secret.")
    fingerprint: TlsFingerprint | None = Field(None, description="SHA-256 fingerprint of the TLS certificate "
                                    "(pinned, as PBS and the PVE storage plugin do).")
    verify_tls: bool = Field(True, description="Set false only to disable TLS checks (loud warning).")
    nodes: list[str] = Field(default_factory=list, description="Cluster nodes.")
    expect_empty: bool = Field(False, description="The cluster truly has no guest: the inventory case passes "
                               "on 0 guests seen (shown in its evidence). Default: 0 guests fails (a token "
                               "that sees nothing).")
    node_ssh: "SshEndpoint | dict[str, SshEndpoint] | None" = Field(None, description=(
        "SSH to the nodes for `pct exec` (forced command): one endpoint used for every node, or a "
        "mapping node -> endpoint (pct reaches only the containers of the node it runs on)."),
        examples=[{"pve2": {"host": "pve2.lan", "user": "root", "key_file": "/etc/restoredrill/pct_key",
                            "known_hosts_file": "/etc/restoredrill/known_hosts"}}])

    @model_validator(mode="after")
    def _node_ssh_nodes(self) -> "PveEndpoint":
        if isinstance(self.node_ssh, dict) and self.nodes:
            unknown = sorted(set(self.node_ssh) - set(self.nodes))
            if unknown:
                raise ValueError(f"node_ssh names node(s) {', '.join(unknown)} that are not in nodes "
                                 f"({', '.join(self.nodes)})")
        return self

    def ssh_for_node(self, node: str) -> "SshEndpoint | None":
        """The SSH endpoint of ``node``: the mapping's entry, or the single endpoint."""
        if isinstance(self.node_ssh, dict):
            return self.node_ssh.get(node)
        return self.node_ssh


class PbsDatastore(Strict):
    name: str = Field(description="Datastore name on the PBS.")
    role: Literal["local", "offsite"] = Field(description="local (fast rollback) or offsite copy.")
    pve_storage: str | None = Field(None, description="The PVE storage id pointing at this datastore.")
    namespace: str | None = Field(None, max_length=256, pattern=(
        r"^[A-Za-z0-9_][A-Za-z0-9._\-]*(/[A-Za-z0-9_][A-Za-z0-9._\-]*){0,6}$"), description=(
        "PBS namespace holding the backups (a/b/c, at most 7 levels; pbs-api-types "
        "BACKUP_NAMESPACE_SCHEMA); sent as ns on every PBS call. Unset: the root namespace."),
        examples=["homelab"])
    retention: str = Field(description="Name of a retention policy in policies.retention.")
    rpo: str | None = Field(None, description="Name of an RPO policy in policies.rpo.")
    quota: Size | None = Field(None, description="Quota of the dataset holding the datastore.")
    backend: Literal["filesystem", "s3"] = Field("filesystem", description="Where the datastore keeps chunks.")
    s3_target: str | None = Field(None, description="offsite.s3 target holding this datastore (backend s3).")
    sync_job: str | None = Field(None, description="PBS sync job that feeds this datastore.")
    encryption_required: bool = Field(True, description="Every snapshot must be client-side encrypted.")
    key_fingerprint: KeyFingerprint | None = Field(None, description="Fingerprint of the encryption key kept offsite.")
    key_escrow: KeyEscrow | None = Field(None, description="Where the encryption key of this datastore is "
                                         "held (the recovery-path lint and the key-proof drill).")
    max_usage: float = Field(0.9, gt=0, le=1, description="Largest share of the quota (or the disk) in use.")
    verify_max_age: Duration = Field("8d", description="Newest verification of each group at most this old.")
    gc_max_age: Duration = Field("8d", description="Garbage collection last ran OK within this.")
    prune_max_age: Duration = Field("26h", description="Prune job last ran OK within this.")
    sync_max_age: Duration = Field("28h", description="Sync job (sync_job) last ran OK within this "
                                   "(25 h cycle plus grace).")
    expect_empty: bool = Field(False, description="A group with no snapshot is expected: the server retention "
                               "comparison passes on 0 compared (shown in its evidence). Default: 0 fails.")


class PbsEndpoint(Strict):
    url: str = Field(description="PBS API base URL, e.g. https://pbs.lan:8007.")
    token_id: str = Field(pattern=r"^[^@!\s]+@[^@!\s]+![^@!\s]+$", description="API token id.")
    token_secret: Secret = Field(description="Reference to the token secret.")
    fingerprint: TlsFingerprint | None = Field(None, description="SHA-256 fingerprint of the TLS certificate.")
    verify_tls: bool = Field(True, description="Set false only to disable TLS checks (loud warning).")
    timezone: TimeZone | None = Field(None, description="Zone of the PBS server (prune periods); "
                                      "default site.timezone.")
    datastores: list[PbsDatastore] = Field(default_factory=list, description="Datastores to audit.")


class Proxmox(Strict):
    pve: PveEndpoint | None = Field(None, description="The PVE cluster.")
    pbs: PbsEndpoint | None = Field(None, description="The Proxmox Backup Server.")


# --- guests ------------------------------------------------------------------------

class HealthCheck(Strict):
    name: str = Field(pattern=NAME, description="Name of the check (a test case id).")
    kind: Literal["service", "process", "port", "file", "command", "http", "sql", "canary"] = Field(
        description="What to check inside the restored guest.")
    target: str = Field(description="Unit, process, port, path, command, URL or query.")
    expect: str | None = Field(None, description="Expected content, output or body pattern (regex).")
    from_runner: bool = Field(False, description="http only: reach the URL from the runner's drill-bridge leg.")
    database: str | None = Field(None, pattern=r"^(sqlite:/.+|postgres:[A-Za-z0-9_]+)$",
                                 description="sql only: sqlite:/path/in/guest or postgres:DBNAME.")
    show_found: bool = Field(False, description="Show what was found (at most 80 printable characters) in "
                             "messages and evidence; by default only its SHA-256 prefix, length and whether "
                             "it matched.")


class Guest(Strict):
    name: str = Field(pattern=NAME, description="Guest name as used in reports.")
    vmid: int = Field(ge=100, description="VMID of the production guest (read only, never changed).")
    type: Literal["qemu", "lxc"] = Field(description="qemu (VM) or lxc (container).")
    node: str | None = Field(None, description="Node the guest runs on.")
    strategy: Literal["pbs", "config-export", "none"] = Field(description="How the guest is backed up.")
    exception: str | None = Field(None, description="Why the guest is not snapshotted (required unless pbs).")
    config_export: str | None = Field(None, description="offsite.config_exports entry proving the config backup.")
    snapshot: Literal["latest", "latest-verified", "oldest", "random", "pinned"] = Field(
        "latest-verified", description="Which snapshot a restore drill uses.")
    pinned_snapshot: str | None = Field(None, description="Volid used when snapshot is pinned.")
    restore_from: Literal["local", "offsite", "rotate"] = Field(
        "rotate", description="Which copy a restore drill restores from: local, offsite (the disaster copy) or "
        "rotate (the copy whose last passing restore is oldest, so every copy is restore-tested in turn).")
    rpo: str | None = Field(None, description="Name of an RPO policy.")
    access: Literal["agent", "ssh", "pct", "none"] = Field(
        "agent", description="How checks reach the scratch guest: agent (the QEMU guest agent: VMs), pct "
        "(`pct exec` over the node's SSH: containers), ssh (by address from the runner), or none (no check "
        "inside the guest: the drill proves the restore and that PVE reports the guest running; health may "
        "hold only from_runner http checks).")
    address: str | None = Field(None, description="The guest's address on the drill bridge (ssh access and "
                                "http checks from the runner); a VM keeps the one its own OS configures.")
    health: list[HealthCheck] = Field(default_factory=list, description="Checks run in the scratch guest.")
    depends_on: list[str] = Field(default_factory=list, description="Guests this one needs to be useful.")
    pre_backup_borg: str | None = Field(None, description="Borg repository whose archive must end "
                                        "before this guest's PBS snapshot starts.")
    sequencing_window: Duration = Field("2h", description="Max gap between that archive and the snapshot.")
    monitor_host: str | None = Field(None, description="Host name or address monitors reach the production "
                                     "guest at (the monitoring drill matches Kuma's monitors to it).")
    monitored: list[Annotated[str, AfterValidator(check_endpoint)]] | None = Field(
        None, description="Endpoints (URL or host:port) that must each have a monitor; default: the guest's "
        "http and port health checks, with monitor_host as their host.")

    @model_validator(mode="after")
    def _exception_reason(self) -> "Guest":
        if self.strategy != "pbs" and not (self.exception or "").strip():
            raise ValueError(f"guest with strategy {self.strategy!r} needs an exception: a reason")
        if self.snapshot == "pinned" and not self.pinned_snapshot:
            raise ValueError("snapshot: pinned needs pinned_snapshot")
        return self


# --- Borg --------------------------------------------------------------------------

def archive_relative(value: str) -> str:
    """A path inside an archive, as `borg list` shows it: no leading '/', no '..' component.

    The drill refuses such paths at run time too (checks/safe_paths.py split_relative); here the
    inventory is refused at once, with its file and line, instead of when the drill runs.
    """
    if value.startswith("/"):
        raise ValueError("an archive path is relative to the archive root, as `borg list` shows it: "
                         "remove the leading /")
    if ".." in value.split("/"):
        raise ValueError("an archive path must not hold a '..' component (it could leave the extract)")
    return value


ArchivePath = Annotated[str, AfterValidator(archive_relative)]


class VerifyData(Strict):
    every_runs: int = Field(7, ge=1, le=1000, description="A full `check --verify-data` at least "
                            "every N runs; other runs check the repository and one archive's data.")
    max_age: Duration = Field("31d", description="...or when the last full read is older than this.")
    max_duration: Duration | None = Field(None, description="Budget for the partial repository check "
                                          "(resumable `--repository-only --max-duration`).")


class SpotCheck(Strict):
    source: str = Field(description="Live source directory to compare with (on the runner).")
    archive_path: ArchivePath | None = Field(None, description="Path of the source inside the archive "
                                     "(default: source without its leading /).")
    sample: int = Field(20, ge=1, le=100000, description="Files compared by SHA-256.")
    count_tolerance: float = Field(0.1, ge=0, le=1, description="Allowed share of file-count difference.")
    mismatch_tolerance: float = Field(0.0, ge=0, le=1, description="Allowed share of differing samples.")
    expect_empty: bool = Field(False, description="The source is empty by design: 0 files sampled passes "
                               "(shown in the evidence). Default: 0 fails (an unmounted source looks so).")


class SqlQuery(Strict):
    sql: str = Field(description="Read-only query run against the restored database.")
    expect: str = Field(description="Expected result: rows joined by newlines, columns by tabs.")
    show_found: bool = Field(False, description="Show what was found (at most 80 printable characters) in "
                             "messages and evidence; by default only its SHA-256 prefix, length and whether "
                             "it matched.")


class SqliteFile(Strict):
    path: str = Field(description="SQLite file inside the archive.")
    show_found: bool = Field(False, description="On failure show the first integrity problem (at most 80 "
                             "printable characters; it may quote database content); by default only their count.")
    expect_empty: bool = Field(False, description="A database without tables is expected: it passes (shown in "
                               "the evidence). Default: 0 tables fails (a zero-byte file passes integrity_check).")

    def __str__(self) -> str:
        """The path: the drill's case id is built from it."""
        return self.path


def _sqlite_path(entry: str | SqliteFile) -> str | SqliteFile:
    """Checked on the union, not in each member, so a bad path gives one error, not one per member."""
    archive_relative(str(entry))
    return entry


SqlitePath = Annotated[str | SqliteFile, AfterValidator(_sqlite_path)]


class PostgresDump(Strict):
    path: ArchivePath = Field(description="Dump file inside the archive (plain SQL or pg_dump -Fc).")
    database: str = Field("restored", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Database name.")
    queries: list[SqlQuery] = Field(default_factory=list, description="Queries and expected results.")


class Canary(Strict):
    path: ArchivePath = Field(description="Canary file inside the archive, written before every backup.")
    equals: str | None = Field(None, description="Exact content (trailing newline ignored).")
    pattern: str | None = Field(None, description="Regular expression the content must match.")
    show_found: bool = Field(False, description="Show what was found (at most 80 printable characters) in "
                             "messages and evidence; by default only its SHA-256 prefix, length and whether "
                             "it matched.")

    @model_validator(mode="after")
    def _one_expectation(self) -> "Canary":
        if self.equals is None and self.pattern is None:
            raise ValueError("canary needs equals or pattern")
        if self.pattern is not None:
            re.compile(self.pattern)
        return self


class DataChecks(Strict):
    paths: list[ArchivePath] = Field(default_factory=list, description="Paths that must exist in the archive.")
    min_files: int | None = Field(None, ge=0, description="Least number of files the archive holds.")
    spot_check: SpotCheck | None = Field(None, description="Compare with the live source.")
    sqlite: list[SqlitePath] = Field(default_factory=list, description="SQLite files that must pass "
                                           "integrity_check: a path, or path and show_found.")
    postgres_dumps: list[PostgresDump] = Field(default_factory=list, description="Dumps to restore.")
    canary: Canary | None = Field(None, description="A known file and value.")


class BackupWindow(Strict):
    start: str = Field(pattern=r"^([01]?\d|2[0-3]):[0-5]\d$", description="Daily start of the backup "
                       "(borg create), HH:MM on the backup machine's clock.")
    duration: Duration = Field(description="How long the backup may run, e.g. 2h.")
    timezone: TimeZone | None = Field(None, description="Zone of that clock (default: prune_timezone, "
                                      "then site.timezone).")


def _one_or_many_windows(value: object) -> object:
    return [value] if isinstance(value, dict) else value


class BorgRepository(Strict):
    name: str = Field(pattern=NAME, description="Repository name as used in reports.")
    location: str = Field(description="Local path or ssh://user@host:port/path (no password in it).")
    passphrase: Secret | None = Field(None, description="Reference to the passphrase (none: unencrypted).")
    storage_box: str | None = Field(None, description="offsite.storage_boxes entry reached over SSH.")
    ssh_key_file: str | None = Field(None, description="SSH key for this repository (default: the box's).")
    retention: str | None = Field(None, description="Retention policy name.")
    retention_glob: str | None = Field(None, description="Only archives matching this glob (as prune's "
                                       "--glob-archives); default all.")
    prune_timezone: TimeZone | None = Field(None, description="Zone of the machine that runs prune "
                                            "(default: site.timezone).")
    rpo: str | None = Field(None, description="RPO policy name.")
    encryption_required: bool = Field(True, description="Fail when the repository is not encrypted.")
    archive: Literal["latest", "oldest", "random"] = Field("latest", description="Archive to extract.")
    lock_wait: Duration = Field("10m", description="Wait this long for a repository lock.")
    backup_window: Annotated[list[BackupWindow], BeforeValidator(_one_or_many_windows)] = Field(
        default_factory=list, description="When borg create runs (one window or a list): every drill step "
        "that takes the repository lock ends window_margin before the next start (none: no limit).")
    window_margin: Duration = Field("15m", description="Lock-taking drill steps end this long before a "
                                    "backup window starts.")
    verify_data: VerifyData = Field(default_factory=VerifyData, description="Read budget.")
    checks: DataChecks = Field(default_factory=DataChecks, description="Checks on the extracted data.")
    borg_binary: str = Field("borg", description="borg executable on the runner.")
    remote_path: str | None = Field(None, description="borg executable on the server (--remote-path).")
    key_escrow: KeyEscrow | None = Field(None, description="Where the repository key is held (the "
                                         "recovery-path lint and the key-proof drill).")


class Borg(Strict):
    repositories: list[BorgRepository] = Field(default_factory=list, description="Borg repositories.")


# --- offsite -----------------------------------------------------------------------

class SshEndpoint(Strict):
    host: str = Field(description="Host name or address.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    user: str = Field(description="Login user.")
    key_file: str = Field(description="Private key file (path; the key itself never in the inventory).")
    known_hosts_file: str = Field(description="known_hosts pinning the host key (strict checking).")


class StorageBox(SshEndpoint):
    name: str = Field(pattern=NAME, description="Name used by references.")
    requires: list[str] = Field(default_factory=list, description="Guests needed to reach this box from "
                                "the site (e.g. the firewall, DNS); none: reachable from any internet line.")


class S3Target(Strict):
    name: str = Field(pattern=NAME, description="Name used by references.")
    endpoint: str = Field(description="S3 endpoint URL.")
    region: str = Field("us-east-1", description="Region.")
    bucket: str = Field(description="Bucket.")
    store_prefix: str = Field(description="Object key prefix of the PBS datastore.")
    access_key: Secret = Field(description="Reference to a read-only access key id.")
    secret_key: Secret = Field(description="Reference to its secret key.")
    ca_file: str | None = Field(None, description="CA bundle for a private TLS endpoint.")
    egress_budget: Size = Field("1GiB", description="Bytes the drill may read per run.")
    require_object_lock: bool = Field(True, description="Fail when object lock is off.")
    retention: str | None = Field(None, description="Retention policy of the datastore in the bucket "
                                  "(default: that of the proxmox.pbs datastore naming this target).")
    rpo: str | None = Field(None, description="RPO policy of the newest offsite snapshot.")
    encryption_required: bool = Field(True, description="Only encrypted chunks may be in the bucket.")
    key_fingerprint: KeyFingerprint | None = Field(None, description="Fingerprint of the encryption key the snapshots "
                                        "must carry (the key kept outside the site).")
    read_data_runs: int = Field(7, ge=1, le=10000, description="Every chunk is read within this many runs.")
    expect_empty: bool = Field(False, description="The store prefix is empty by design: the cases that count "
                               "(manifests, chunks, sample, encryption, retention, cross-copy) pass on 0 items, "
                               "shown in their evidence. Default: 0 fails (a wrong bucket or prefix).")
    requires: list[str] = Field(default_factory=list, description="Guests needed to reach this target from "
                                "the site (e.g. the firewall, DNS).")


def _box_glob(value: str) -> str:
    """As SftpReader.glob (clients/sftp.py) needs it: a leading / starts at the box's root, but a
    '..' component is refused there at run time, so the inventory is refused at once."""
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if not parts:
        raise ValueError("path_glob names no file (e.g. opnsense/config-*.xml)")
    if ".." in parts:
        raise ValueError("path_glob must not hold a '..' component")
    return value


BoxGlob = Annotated[str, AfterValidator(_box_glob)]


class ConfigExport(Strict):
    name: str = Field(pattern=NAME, description="Name used by references.")
    kind: Literal["opnsense"] = Field("opnsense", description="Format of the export.")
    storage_box: str = Field(description="offsite.storage_boxes entry holding the exports.")
    path_glob: BoxGlob = Field(description="Glob of the export files on the box.")
    passphrase: Secret | None = Field(None, description="Reference to the export passphrase (encrypted exports).")
    rpo: str | None = Field(None, description="RPO policy name.")


class Offsite(Strict):
    s3: list[S3Target] = Field(default_factory=list, description="S3 targets.")
    storage_boxes: list[StorageBox] = Field(default_factory=list, description="SSH storage boxes.")
    config_exports: list[ConfigExport] = Field(default_factory=list, description="Firewall config exports.")


# --- datasets (3-2-1) --------------------------------------------------------------

class DatasetCopy(Strict):
    where: str = Field(description="Where the copy is: free text or a reference such as borg:REPO, "
                       "pbs:DATASTORE or production.")
    media: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$", description="Kind of media, e.g. zfs, disk, "
                       "object-storage, storage-box, tape.")
    offsite: bool = Field(False, description="True when the copy survives the loss of the site.")


class Dataset(Strict):
    name: str = Field(pattern=NAME, description="Dataset name as used in reports.")
    copies: list[DatasetCopy] = Field(default_factory=list, description="Every copy of the dataset, the "
                                      "production one included (3-2-1: three copies, two media, one offsite).")


# --- notifications and reports -----------------------------------------------------

class Notifications(Strict):
    email_to: list[str] = Field(default_factory=list, description="Recipients of failure mail.")
    smtp_host: str | None = Field(None, description="SMTP server (STARTTLS).")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    smtp_user: str | None = Field(None, description="SMTP user.")
    smtp_password: Secret | None = Field(None, description="Reference to the SMTP password.")
    email_from: str | None = Field(None, description="Sender address of failure mail (default: smtp_user).")
    heartbeat_url: Secret | None = Field(None, description="Reference to a push-monitor URL (holds a token).")
    pve_targets: list[str] = Field(default_factory=list, description="PVE/PBS notification targets that must exist.")


class Reports(Strict):
    out_dir: str = Field("reports", description="Default output directory.")
    metrics_file: str | None = Field(None, description="Prometheus textfile-collector path.")
    keep_runs: int = Field(400, ge=1, description="Runs kept in the history.")
    max_untested_days: int = Field(35, ge=1, le=3650, description="A target not restore-tested for this "
                                   "many days is a failing coverage-gap case.")
    rto_regression: float = Field(0.5, gt=0, le=100, description="A restore slower than the median of "
                                  "past runs by more than this share is a failing regression case.")


class Inventory(Strict):
    version: Literal[1] = Field(1, description="Inventory format version.")
    site: Site = Field(description="The site.")
    policies: Policies = Field(default_factory=Policies, description="Named policies.")
    scratch: Scratch = Field(default_factory=Scratch, description="Where drills may create things.")
    proxmox: Proxmox = Field(default_factory=Proxmox, description="PVE and PBS.")
    guests: list[Guest] = Field(default_factory=list, description="Every guest of the cluster.")
    borg: Borg = Field(default_factory=Borg, description="Borg repositories.")
    offsite: Offsite = Field(default_factory=Offsite, description="Offsite copies.")
    datasets: list[Dataset] = Field(default_factory=list, description="Datasets and their copies (3-2-1 lint).")
    notifications: Notifications = Field(default_factory=Notifications, description="Alerting.")
    reports: Reports = Field(default_factory=Reports, description="Report outputs.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="The site's monitoring (Uptime Kuma).")

    def storage_box(self, name: str) -> StorageBox:
        return next(box for box in self.offsite.storage_boxes if box.name == name)
