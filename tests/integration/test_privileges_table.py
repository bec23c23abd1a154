"""The README's "Token privileges" table is the truth about the lab's tokens and the drills.

1. The table and ``homelab.pve_drill_acl`` / ``pbs_drill_acl`` / ``pbs_audit_acl`` hold the
   same (token, path, privilege) triples, both ways, for PVE 9 and PVE 8.
2. Per row: the double (central ``permissions`` + the handlers' filters) with that one
   privilege removed from the token makes the drill the row names fail, through the real
   clients (``privilege_walks``). Where upstream's answer names the privilege (PVE
   ``Permission check failed (PATH, PRIV)``) the message must show it; ``UNNAMED`` lists the
   rows whose failure upstream does not name (a filtered list, a bare 403), with the text
   the drill does show.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from restoredrill.lab.proxmox import ProxmoxDouble, homelab
from restoredrill.lab.proxmox.permissions import AclEntry
from tests.integration import privilege_walks as walks

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
TOKENS = {"PVE drill": ("pve", "pve_drill"), "PBS drill": ("pbs", "pbs_drill"),
          "PBS audit": ("pbs", "pbs_audit")}
ROW = re.compile(r"^\| (?P<tokens>[^|]+) \| `(?P<path>[^`]+)` \| (?P<priv>[A-Za-z.]+)"
                 r"(?: \(PVE (?P<release>\d+)\))? \| (?P<needed>[^|]+) \|$")

# Failures whose text (upstream's or the drill's) does not name the privilege: the part
# of the message the drill shows instead.
UNNAMED = {
    ("/", "VM.Audit", "audit"): "/cluster/resources guests",           # filtered list
    ("/vms", "VM.Backup"): "not listed",                               # filtered backups
    ("/storage/pbs", "Datastore.AllocateSpace", "audit"): "backup storages",   # filtered
    ("/storage/pbs-offsite", "Datastore.AllocateSpace", "audit"): "backup storages",
    ("/pool/restoredrill", "VM.Allocate"): "Permission check failed",  # qemu-server create_vm
    ("/pool/restoredrill", "Pool.Audit"): "drill pool",                # raise_perm_exc()
    ("/mapping/notifications", "Mapping.Audit"): "Permission check failed",   # 'or' check
    ("/remote", "Remote.Audit"): "sync jobs",                          # filtered list
    # PBS answers every failed check with a bare "permission check failed" (rest.rs)
    **{(path, priv): "permission check failed" for path, priv in (
        ("/datastore", "Datastore.Audit"), ("/datastore", "Datastore.Read"),
        ("/datastore", "Datastore.Modify"), ("/system/notifications", "Sys.Audit"))},
}


def table_rows() -> list[dict[str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**Token privileges**"):]
    section = section[:section.index("\n\n", section.index("| token |"))]
    rows = []
    for line in section.splitlines():
        if line.startswith("| token |") or line.startswith("| ---"):
            continue
        if line.startswith("|"):
            match = ROW.match(line)
            assert match, f"README privileges table: row not in the table's format: {line}"
            rows.append(match.groupdict())
    assert rows, "README: no rows in the Token privileges table"
    return rows


def triples_from_table(release: int) -> set[tuple[str, str, str]]:
    found = set()
    for row in table_rows():
        if row["release"] and int(row["release"]) != release:
            continue
        for token in row["tokens"].split(", "):
            assert token in TOKENS, f"README privileges table names an unknown token {token!r}"
            found.add((token, row["path"], row["priv"]))
    return found


def triples_from_acls(release: int) -> set[tuple[str, str, str]]:
    acls = {"PVE drill": homelab.pve_drill_acl((release, 0)), "PBS drill": homelab.pbs_drill_acl(),
            "PBS audit": homelab.pbs_audit_acl()}
    return {(token, entry.path, priv) for token, entries in acls.items() for entry in entries
            for priv in entry.privs}


@pytest.mark.parametrize("release", [9, 8])
def test_the_table_lists_exactly_the_lab_tokens_privileges(release):
    table, acls = triples_from_table(release), triples_from_acls(release)
    assert not acls - table, f"the lab's tokens hold privileges the README does not list: {sorted(acls - table)}"
    assert not table - acls, f"the README lists privileges the lab's tokens lack: {sorted(table - acls)}"


def row_cases() -> list:
    cases = []
    for row in table_rows():
        release = int(row["release"] or 9)
        for token in row["tokens"].split(", "):
            drills = sorted({d.strip() for part in row["needed"].split(";") if ":" in part
                             for d in part.split(":")[0].split(",")})
            for drill in drills:
                cases.append(pytest.param(token, row["path"], row["priv"], drill, release,
                                          id=f"{token}-{row['path']}-{row['priv']}-{drill}"))
    return cases


@pytest.fixture(scope="module")
def doubles(tmp_path_factory):
    """One double per PVE major, started on first use. TODO(lead): double.py should create
    the drill token from ``homelab.pve_drill_acl(<its release>)``; until then it is set here."""
    started: dict[int, ProxmoxDouble] = {}

    def get(release: int) -> ProxmoxDouble:
        if release not in started:
            double = ProxmoxDouble(tmp_path_factory.mktemp(f"pve{release}"),
                                   pve_version="9.1.1" if release == 9 else "8.4.1").start()
            double.pve_drill.acl = homelab.pve_drill_acl((release, 0))
            started[release] = double
        return started[release]
    yield get
    for double in started.values():
        double.stop()


@pytest.mark.parametrize("token_name,path,priv,drill,release", row_cases())
def test_without_the_privilege_the_drill_fails_naming_it(doubles, token_name, path, priv, drill,
                                                         release):
    double = doubles(release)
    api, attribute = TOKENS[token_name]
    token = getattr(double, attribute)
    walk = walks.WALKS[(api, drill)]
    walk(double, token)                                   # the full token: the drill works
    original = list(token.acl)
    token.acl = [AclEntry(e.path, e.privs - {priv}, e.propagate) if e.path == path else e
                 for e in original]
    try:
        with pytest.raises(Exception) as failed:
            walk(double, token)
    finally:
        token.acl = original
        walks.clean_up(double)
    message = str(failed.value)
    expected = UNNAMED.get((path, priv, drill)) or UNNAMED.get((path, priv))
    if expected is not None:
        assert expected in message, message
    else:
        assert priv in message, f"the failure does not name {priv}: {message}"
