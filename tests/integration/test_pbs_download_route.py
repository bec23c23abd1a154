"""The double's ``GET /admin/datastore/{store}/download`` (PBS ``download_file``): the raw
file of one snapshot, the privilege upstream demands (Datastore.Read, or Datastore.Backup
and owning the group), and no way out of the snapshot directory."""
from __future__ import annotations

import pytest
from proxmoxer.core import ResourceException

from restoredrill.clients.pbs import PbsClient
from restoredrill.clients.proxmox_api import ApiChokePoint, ApiError, Endpoint
from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.proxmox.double import _info
from restoredrill.lab.proxmox.permissions import acl
from restoredrill.lab.proxmox.testing import pbs_api
from restoredrill.pbsformat import MANIFEST_BLOB_NAME, SnapshotRef, decode_manifest_blob

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def double(tmp_path_factory):
    with ProxmoxDouble(tmp_path_factory.mktemp("download")) as running:
        yield running


def client(double, token=None) -> PbsClient:
    token = token or double.pbs_drill_token
    return PbsClient(ApiChokePoint(Endpoint(double.pbs_url, token.token_id, token.secret(),
                                            double.pbs_fingerprint, service="PBS")))


def newest(double, store="local", kind="vm", ident="110"):
    return max(double.stores[store].snapshot_infos(kind, ident), key=lambda i: i.epoch)


def params(info, name=MANIFEST_BLOB_NAME):
    return {"backup-type": info.backup_type, "backup-id": info.backup_id, "backup-time": info.epoch,
            "file-name": name}


def test_download_answers_the_raw_file_of_the_snapshot(double):
    info = newest(double)
    store = double.stores["local"]
    raw = client(double).download("local", "vm", "110", info.epoch, MANIFEST_BLOB_NAME)
    assert raw == (store.root / info.ref.file_path(MANIFEST_BLOB_NAME)).read_bytes()
    manifest = decode_manifest_blob(raw)
    assert (manifest.backup_type, manifest.backup_id, manifest.backup_time) == ("vm", "110", info.epoch)
    index = client(double).download("local", "vm", "110", info.epoch, "drive-scsi0.img.fidx")
    assert index == (store.root / info.ref.file_path("drive-scsi0.img.fidx")).read_bytes()


def test_download_needs_read_or_backup_and_ownership(double):
    info = newest(double)
    secrets = double.base_dir / "secrets"
    tokens = double.pbs_tokens
    audit = _info(tokens.create("audit@pbs!only", [acl("/datastore", "Datastore.Audit")], secrets))
    backup = _info(tokens.create("backup@pbs!writer", [acl("/datastore", "Datastore.Backup")], secrets))
    owner = _info(tokens.create("root@pam!owner-backup", [acl("/datastore", "Datastore.Backup")], secrets))
    for token in (audit, backup):
        with pytest.raises(ResourceException) as denied:
            pbs_api(double, token).admin.datastore("local").download.get(**params(info))
        assert denied.value.status_code == 403
    # the group's owner is root@pam; a token of root@pam does not own it (upstream: a user owns
    # what its tokens made, not the other way round)
    with pytest.raises(ApiError) as caught:
        client(double, owner).download("local", "vm", "110", info.epoch, MANIFEST_BLOB_NAME)
    assert caught.value.status == 403
    store = double.stores["local"]
    store.backend.write(store.layout.content_key(f"{info.ref.group_path}/owner"), b"backup@pbs!writer\n")
    try:
        assert client(double, backup).download("local", "vm", "110", info.epoch, MANIFEST_BLOB_NAME)
    finally:
        store.backend.write(store.layout.content_key(f"{info.ref.group_path}/owner"), b"root@pam\n")


@pytest.mark.parametrize("name", ["../owner", "..", ".protected", "a/b", "", "index.json.blob/.."])
def test_download_refuses_names_that_leave_the_snapshot(double, name):
    info = newest(double)
    with pytest.raises(ResourceException) as refused:
        pbs_api(double).admin.datastore("local").download.get(**params(info, name))
    assert refused.value.status_code == 400


def test_download_of_a_missing_file_or_snapshot_is_400(double):
    info = newest(double)
    api = pbs_api(double).admin.datastore("local").download
    with pytest.raises(ResourceException) as missing:
        api.get(**params(info, "drive-virtio9.img.fidx"))
    assert missing.value.status_code == 400 and "File open failed" in str(missing.value)
    with pytest.raises(ResourceException) as gone:
        api.get(**{**params(info), "backup-time": info.epoch - 3600})
    assert gone.value.status_code == 400
    with pytest.raises(ResourceException) as no_store:
        pbs_api(double, double.pbs_admin_token).admin.datastore("nosuch").download.get(**params(info))
    assert no_store.value.status_code == 400


def test_the_route_stays_inside_the_datastore_on_disk(double, tmp_path):
    # a symlink planted in a snapshot directory that points outside is not followed out
    info = newest(double)
    store = double.stores["local"]
    outside = tmp_path / "secret.blob"
    outside.write_bytes(b"not yours")
    link = store.root / info.ref.file_path("leak.blob")
    link.symlink_to(outside)
    try:
        with pytest.raises(ResourceException) as refused:
            pbs_api(double).admin.datastore("local").download.get(**params(info, "leak.blob"))
        assert refused.value.status_code == 400
    finally:
        link.unlink()
    assert SnapshotRef(None, "vm", "110", info.epoch).path == info.ref.path
