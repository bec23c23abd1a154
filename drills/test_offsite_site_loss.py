"""The site-loss drill: PVE and PBS burned down, with all their local state.

From the offsite S3 bucket and the ESCROWED key alone, restoredrill's own PBS reader reassembles
each guest's newest offsite snapshot (every chunk of every index fetched, decrypted and checked
against its digest, within the target's egress budget) and checks what can be checked without
booting: a VM disk's partition table and ext filesystem (debugfs in the sandbox) holding the
paths the guest's file checks name; a container archive's file list. One case per guest with
``strategy: pbs`` and an S3-backed offsite datastore.

It reads every chunk of the newest snapshot of every guest, so it runs in ``--mode monthly``
(or with ``--site-loss``); other runs leave it out (deselected, never skipped as a pass).
"""
from __future__ import annotations

import pytest

from restoredrill.checks.errors import CheckFailed
from restoredrill.fixtures.offsite import OFFSITE_ERRORS
from restoredrill.fixtures.site_loss_inside import Inspector
from restoredrill.pbsformat import MissingObject

pytestmark = [pytest.mark.drill_kind("offsite"), pytest.mark.site_loss]
SITE_LOSS_ERRORS = (*OFFSITE_ERRORS, MissingObject)


def failure_text(where: str, exc: BaseException) -> str:
    """One paragraph: a CheckFailed names its place itself; anything else gets the guest's."""
    if isinstance(exc, CheckFailed):
        return str(exc)
    if isinstance(exc, MissingObject):
        return f"{where}: object {exc} is missing from the bucket"
    return f"{where}: {exc}"


def test_site_loss(site_loss_guest, site_loss, evidence):
    """The newest offsite snapshot of the guest, rebuilt from the bucket and the escrowed key alone."""
    row = site_loss_guest
    evidence(drill=f"guest:{row.name}", check="site-loss", copy="offsite", datastore=row.store.name,
             namespace=row.store.namespace or "", s3_target=row.target.name, bucket=row.target.bucket,
             egress_budget=site_loss.bucket.budget.limit or 0)
    inspector = Inspector(row.guest, site_loss.where)
    try:
        try:
            inspector.finish(site_loss.run(inspector))
        except SITE_LOSS_ERRORS as exc:
            raise pytest.fail.Exception(failure_text(site_loss.where, exc), pytrace=False) from None
    finally:         # what was done, also when it failed part-way
        result = site_loss.result
        evidence(snapshot=result.snapshot, key_fingerprint=result.key_fingerprint,
                 archives=",".join(result.archives), chunks=result.chunks, unique_chunks=result.unique_chunks,
                 encrypted_chunks=result.encrypted_chunks, bytes_read=result.bytes_read,
                 bytes_restored=result.bytes_restored, seconds=result.seconds, files_checked=len(inspector.paths),
                 files_found=",".join(result.found), files_missing=",".join(result.missing), **result.inside)
