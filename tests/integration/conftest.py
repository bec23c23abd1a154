"""Fixtures shared by integration modules: one offsite lab (SeaweedFS, the storage box's sshd
and the Proxmox double) per test session, not one per module."""
from __future__ import annotations

import pytest

from restoredrill.lab.offsite import setup_offsite
from restoredrill.lab.proxmox import ProxmoxDouble
from restoredrill.lab.storagebox import StorageBox


@pytest.fixture(scope="session")
def offsite_lab(tmp_path_factory):
    """The offsite lab; a test that changes the bucket puts it back before it ends."""
    root = tmp_path_factory.mktemp("offsite-lab")
    with StorageBox(root / "box") as box, ProxmoxDouble(root / "proxmox") as double:
        lab = setup_offsite(root / "offsite", box, double)
        try:
            yield lab
        finally:
            lab.stop()
