"""The Proxmox double as clients that others wrote see it (issue 25).

Three monitoring/ops tools written against real PVE and PBS servers run unchanged against
the double with an all-privileges token, each in its own process:
prometheus-pve-exporter 3.10.2 (every collector, ``cluster=1&node=1``), pvecontrol 0.8.0
(status, node/vm/storage/task/acl/user/group list, sanitycheck) and pbs-exporter 0.2.1
(``/metrics``). They are test extras (pyproject ``[test]``), so a missing one fails here
rather than skipping. With the API schema files present the double runs strict and every
request and answer they caused must match the schema, except the departures listed in
``CLIENT_DEVIATIONS``, each proven by the upstream file it names.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.schema import schema_dir

pytestmark = pytest.mark.integration

# where the wire carries more than the schema's item lists (which name only the key)
CLIENT_DEVIATIONS = (
    ("GET", "/cluster/tasks", r"\.(node|pid|pstart|starttime|type|id|user|tokenid|endtime|"
     r"status): not in schema",
     "pve-manager PVE/API2/Cluster.pm (tasks returns pmxcfs's task list entries whole)"),
    ("GET", "/cluster/ha/resources", r"\.(type|digest|state|max_restart|max_relocate|failback)"
     r": not in schema",
     "pve-ha-manager src/PVE/API2/HA/Resources.pm ($api_copy_config: the resource's config "
     "with sid, type and digest)"),
    ("GET", "/cluster/ha/rules", r"\.(type|digest|resources|nodes|strict|disable): not in "
     r"schema", "pve-ha-manager src/PVE/API2/HA/Rules.pm ($get_api_ha_rule: the rule's config)"),
    ("GET", "/nodes/{node}/qemu", r"\.disk: not in schema",
     "qemu-server src/PVE/QemuServer.pm (vmstatus: $d->{disk} = 0)"),
    ("GET", "/nodes/{node}/storage/{storage}/content", r"\.(subtype|content): not in schema",
     "pve-storage src/PVE/Storage/Plugin.pm (list_volumes sets content) and PBSPlugin.pm "
     "(list_volumes sets subtype)"),
)
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("clients") / "double",
                       strict_schema=schema_dir() is not None) as started:
        yield started


def _private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def _run_python(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> str:
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(code))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _unexplained(double: ProxmoxDouble) -> list[str]:
    left = []
    for violation in double.violations:
        if not any(violation.method == method and violation.template == template and
                   re.search(detail, violation.detail)
                   for method, template, detail, _ in CLIENT_DEVIATIONS):
            left.append(str(violation))
    return left


def test_prometheus_pve_exporter_all_collectors(double, tmp_path):
    """The exporter's /pve handler body (collect_pve) with all ten collectors on, cluster=1
    and node=1; certificate checked against the double's CA."""
    token = double.admin_token
    config = _private(tmp_path / "pve.json", json.dumps({
        "user": token.user, "token_name": token.name, "token_value": token.secret(),
        "verify_ssl": str(double.pve_ca_file)}))
    out = _run_python(f"""
        import json
        from pve_exporter.collector import CollectorsOptions, collect_pve
        config = json.load(open({str(config)!r}))
        options = CollectorsOptions(**{{name: True for name in CollectorsOptions._fields}})
        print(collect_pve(config, {double.pve_url.removeprefix('https://')!r}, True, True,
                          options).decode())
        """, tmp_path)
    assert 'pve_up{id="cluster/homelab"} 1.0' in out
    for node in double.nodes:
        assert f'pve_up{{id="node/{node}"}} 1.0' in out
        assert re.search(rf'pve_node_info\{{id="node/{node}",level="",name="{node}",nodeid="\d"', out)
    # the node collectors read the answering (``local``) node only
    assert f'pve_subscription_status{{id="node/{double.node}",status="notfound"}} 1.0' in out
    assert 'pve_cluster_info{id="cluster/homelab",nodes="3",quorate="1"' in out
    assert 'pve_not_backed_up_info{id="qemu/100"} 1.0' in out
    assert 'pve_ha_state{id="lxc/120",state="started"} 1.0' in out
    assert re.search(r'pve_version_info\{.*version="9\.1\.1"', out)
    assert not _unexplained(double), _unexplained(double)


PVECONTROL_COMMANDS = (("status",), ("node", "list"), ("vm", "list"), ("storage", "list"),
                       ("task", "list"), ("acl", "list"), ("user", "list"), ("group", "list"),
                       ("sanitycheck",))


@pytest.mark.parametrize("command", PVECONTROL_COMMANDS, ids=" ".join)
def test_pvecontrol(double, tmp_path, command):
    token = double.admin_token
    home = tmp_path / "home"
    (home / ".config" / "pvecontrol").mkdir(parents=True)
    _private(home / ".config" / "pvecontrol" / "config.yaml", json.dumps({"clusters": [{
        "name": "lab", "host": double.pve_url.removeprefix("https://"), "user": token.user,
        "token_name": token.name, "token_value": token.secret(), "ssl_verify": True}]}))
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "REQUESTS_CA_BUNDLE": str(double.pve_ca_file), "COLUMNS": "250", "TERM": "dumb"}
    done = subprocess.run([str(VENV_BIN / "pvecontrol"), "-c", "lab", *command],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    expected = {"status": "Online: 3", "node": "pve3", "vm": "app-vm", "storage": "pbs-offsite",
                "task": "vzdump", "acl": "Administrator", "user": "restoredrill@pve",
                "group": "drill-operators", "sanitycheck": "Critical: 0"}[command[0]]
    assert expected in out, out[-3000:]
    if command == ("task", "list"):     # the nightly vzdump on the nodes of guests 110, 120
        assert re.search(r"UPID:pve2:[0-9A-F:]+vzdump:110:root@pam:", out)
        assert re.search(r"UPID:pve3:[0-9A-F:]+vzdump:120:root@pam:", out)
    if command == ("sanitycheck",):     # content=images lists no container volume
        assert "is not used" not in out
    assert not _unexplained(double), _unexplained(double)


def test_pbs_exporter_metrics(double, tmp_path):
    """pbs-exporter's /metrics through its WSGI app (it sends verify=False itself)."""
    token = double.pbs_admin_token
    _private(tmp_path / "token", f"{token.token_id}:{token.secret()}")
    out = _run_python(f"""
        import logging
        from werkzeug.test import Client
        from pbs_exporter.exporter import create_app
        logging.disable(logging.CRITICAL)      # it logs every answer at DEBUG
        app = create_app({double.pbs_url!r}, open("token").read())
        answer = Client(app).get("/metrics")
        print(answer.status_code)
        print(answer.get_data(as_text=True))
        """, tmp_path)
    status, _, body = out.partition("\n")
    assert status == "200", body[-2000:]
    total = re.search(r'^pbs_node_memory_total\{node="localhost"\} (\S+)$', body, re.M)
    assert total and float(total.group(1)) > 0
    assert re.search(r'^pbs_node_uptime\{node="localhost"\} [1-9]', body, re.M)
    assert re.search(r'^pbs_task_status\{.*worker_type="garbage_collection"', body, re.M)
    assert not _unexplained(double), _unexplained(double)
