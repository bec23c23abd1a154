"""A Proxmox VE + PBS API test double over datastores in the real PBS on-disk format.

Control flow: ``ProxmoxDouble`` seeds two PBS datastores (``seed``, ``store``), runs the
night's PBS jobs as real tasks (``pbs_jobs``, ``store_ops``), builds the PVE node state
(``homelab``, ``cluster``), then serves both APIs over HTTPS (``http``: TLS, tokens,
routing, schema validation from ``schema``/``validate``, faults). Handlers live in
``pve_routes``/``pve_guest_routes``/``pve_restore_routes`` and ``pbs_routes``; restores
(``restore``) read chunks back through ``pbsformat.DatastoreReader`` into guest images;
privileges are decided in ``permissions`` only; request names pass ``names`` first.
Guests are data run by a ``GuestRuntime``; the built-in ``StateOnlyRuntime`` runs nothing.
"""
from restoredrill.lab.proxmox.double import DoubleError, ProxmoxDouble, TokenInfo
from restoredrill.lab.proxmox.faults import Fault, Faults
from restoredrill.lab.proxmox.guests import Guest, GuestRuntime, StateOnlyRuntime
from restoredrill.lab.proxmox.restore import CT_ARCHIVE, CT_ARCHIVE_FORMAT

__all__ = ["CT_ARCHIVE", "CT_ARCHIVE_FORMAT", "DoubleError", "Fault", "Faults", "Guest",
           "GuestRuntime", "ProxmoxDouble", "StateOnlyRuntime", "TokenInfo"]
