"""API tokens and every privilege decision of the double, in one place.

Tokens use the real header formats (``PVEAPIToken=user@realm!id=SECRET``,
``PBSAPIToken=user@realm!id:SECRET``); secrets are random per run, live in 0600 files
and are never logged. An ACL entry grants privileges on a path and (like PVE's
``propagate=1``) everything below it; a VM inherits the ACLs of the pools it is in
(``/pool/<pool>``), as ``check_vm_perm`` does upstream. The guest-config rules mirror
qemu-server ``$check_vm_modify_config_perm`` and pve-container
``check_ct_modify_config_perm``: which privilege each option needs, and which options
only ``root@pam`` (never a token) may set, such as ``hookscript`` and raw ``hostpciN``.
"""
from __future__ import annotations

import hmac
import re
import secrets as pysecrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from restoredrill.secrets import write_private

ALL = "*"


class AuthFailed(Exception):
    """401: no or a wrong token."""


class PermissionDenied(Exception):
    """403 (or, for root-only options, a plain error): the message is upstream's."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class AclEntry:
    path: str
    privs: frozenset[str]
    propagate: bool = True

    def covers(self, path: str) -> bool:
        if path == self.path:
            return True
        base = self.path.rstrip("/") + "/"
        return self.propagate and (self.path == "/" or path.startswith(base))


@dataclass
class ApiToken:
    authid: str               # user@realm!tokenname
    secret: str = field(repr=False)
    secret_file: Path
    acl: list[AclEntry]

    @property
    def user(self) -> str:
        return self.authid.split("!", 1)[0]

    @property
    def token_name(self) -> str:
        return self.authid.split("!", 1)[1]

    def privileges(self, path: str) -> set[str]:
        found: set[str] = set()
        for entry in self.acl:
            if entry.covers(path):
                found |= entry.privs
        return found


def acl(path: str, *privs: str, propagate: bool = True) -> AclEntry:
    return AclEntry(path, frozenset(privs), propagate)


class TokenRegistry:
    """The tokens one server accepts; ``api`` picks the header format (pve or pbs)."""

    def __init__(self, api: str):
        self.api = api
        self.tokens: dict[str, ApiToken] = {}

    def create(self, authid: str, acl_entries: Iterable[AclEntry], secret_dir: Path) -> ApiToken:
        if not re.fullmatch(r"[^\s:/!@]+@[A-Za-z0-9_][A-Za-z0-9._\-]*![A-Za-z0-9_][A-Za-z0-9._\-]*",
                            authid):
            raise ValueError(f"not a token id: {authid!r}")
        secret = str(uuid.UUID(bytes=pysecrets.token_bytes(16), version=4))
        secret_file = secret_dir / f"{self.api}-{authid.replace('@', '_').replace('!', '_')}.secret"
        write_private(secret_file, secret)
        token = ApiToken(authid, secret, secret_file, list(acl_entries))
        self.tokens[authid] = token
        return token

    def authenticate(self, header: str | None) -> ApiToken:
        """The token the Authorization header names, or AuthFailed with upstream's words."""
        prefix, separator = ("PVEAPIToken=", "=") if self.api == "pve" else ("PBSAPIToken=", ":")
        if not header:
            raise AuthFailed("No ticket" if self.api == "pve"
                             else "authentication failed - no authentication credentials provided.")
        if not header.startswith(prefix) or separator not in header[len(prefix):]:
            raise AuthFailed("invalid token format" if self.api == "pve"
                             else "authentication failed - invalid API token header")
        authid, _, secret = header[len(prefix):].rpartition(separator)
        token = self.tokens.get(authid)
        if token is None:
            user, _, name = authid.partition("!")
            raise AuthFailed(f"no such token '{name}' for user '{user}'" if self.api == "pve"
                             else "authentication failed - invalid API token")
        if not hmac.compare_digest(token.secret.encode(), secret.encode()):
            raise AuthFailed("invalid token value!" if self.api == "pve"
                             else "authentication failed - invalid API token")
        return token


def has_privs(token: ApiToken, path: str, privs: Iterable[str], *, any_of: bool = False,
              pools: Iterable[str] = ()) -> bool:
    """Whether ``token`` holds ``privs`` (all, or one with ``any_of``) on ``path``.

    For ``/vms/<id>`` the ACLs of the guest's pools count too.
    """
    held = token.privileges(path)
    if path.startswith("/vms/"):
        for pool in pools:
            held |= token.privileges(f"/pool/{pool}")
    if ALL in held:
        return True
    wanted = list(privs)
    return any(p in held for p in wanted) if any_of else all(p in held for p in wanted)


def require(token: ApiToken, path: str, privs: Iterable[str], *, any_of: bool = False,
            pools: Iterable[str] = (), api: str = "pve") -> None:
    """Raise 403 with upstream's message unless ``has_privs``."""
    privs = list(privs)
    if not has_privs(token, path, privs, any_of=any_of, pools=pools):
        raise PermissionDenied(f"Permission check failed ({path}, {', '.join(privs)})"
                               if api == "pve" else "permission check failed")


def require_vm(token: ApiToken, vmid: int, privs: Iterable[str], pools: Iterable[str],
               pool: str | None = None, any_of: bool = False) -> None:
    """``check_vm_perm``: privileges on /vms/<vmid> (pool ACLs included) or on /pool/<pool>."""
    privs = list(privs)
    if has_privs(token, f"/vms/{vmid}", privs, any_of=any_of, pools=pools):
        return
    if pool and has_privs(token, f"/pool/{pool}", privs, any_of=any_of):
        return
    raise PermissionDenied(f"Permission check failed (/vms/{vmid}, {', '.join(privs)})")


# --- guest config options: which privilege each needs (qemu-server / pve-container) ---
QEMU_OPTION_PRIVS = {
    # qemu-server src/PVE/API2/Qemu.pm $cpuoptions: ``affinity`` is not in it, so only root
    # may set it ("only root can set 'affinity' config")
    "VM.Config.CPU": ("cores", "cpu", "runningcpu", "cpulimit", "cpuunits", "numa", "smp",
                      "sockets", "vcpus"),
    "VM.Config.Memory": ("memory", "balloon", "shares", "allow-ksm"),
    "VM.Config.HWType": ("acpi", "hotplug", "kvm", "machine", "scsihw", "smbios1", "tablet",
                         "vga", "watchdog", "audio0", "rng0"),
    "VM.Config.Options": ("agent", "autostart", "bios", "description", "keyboard", "localtime",
                          "migrate_downtime", "migrate_speed", "name", "onboot", "ostype",
                          "protection", "reboot", "startdate", "startup", "tdf", "template"),
    "VM.PowerMgmt": ("freeze",),
    "VM.Config.Disk": ("boot", "bootdisk", "vmstatestorage"),
}
QEMU_DRIVE_RE = re.compile(r"(ide|sata|scsi|virtio|efidisk|tpmstate)\d+")
QEMU_VALUE_CHECKED_RE = re.compile(r"(unused|serial|usb|hostpci|virtiofs)\d+")


def check_qemu_option(option: str, value: str | None, require_priv: Callable[[list[str]], None],
                      require_path: Callable[[str, list[str]], None], *, deleting: bool = False) -> None:
    """One option a token sets or deletes on a VM (restore overrides, config PUT)."""
    if QEMU_DRIVE_RE.fullmatch(option) or option in ("cdrom", "tags") or \
            option.startswith("unused"):
        return
    if QEMU_VALUE_CHECKED_RE.fullmatch(option):
        check_qemu_device(option, value or "", require_priv, require_path, deleting=deleting)
        return
    for priv, options in QEMU_OPTION_PRIVS.items():
        if option in options:
            require_priv([priv])
            if option == "startup":
                require_path("/", ["Sys.Modify"])
            elif option == "rng0" and device_part(value or "", "source") == "/dev/hwrng":
                require_path("/mapping/hwrng", ["Mapping.Use"])       # check_rng_perm
            return
    if re.fullmatch(r"net\d+", option):
        require_priv(["VM.Config.Network"])
    elif re.fullmatch(r"numa\d+", option):
        require_priv(["VM.Config.CPU"])
    elif re.fullmatch(r"ipconfig\d+", option) or option in (
            "cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver",
            "searchdomain", "sshkeys"):
        # $check_vm_modify_config_perm: check_vm_perm(..., ['VM.Config.Cloudinit',
        # 'VM.Config.Network'], 1): either privilege; the message joins them with "|"
        require_any(require_priv, ["VM.Config.Cloudinit", "VM.Config.Network"])
    elif option == "vmstate":
        require_priv(["VM.Config.Disk", "VM.PowerMgmt"])
    else:
        raise PermissionDenied(f"only root can set '{option}' config", status=500)


def require_any(require_priv: Callable[[list[str]], None], privs: list[str]) -> None:
    """One of ``privs`` through a require-all callback; the refusal names them all as
    pve-access-control RPCEnvironment.pm ``check_full`` with ``any`` does (``A|B``)."""
    refused: PermissionDenied | None = None
    for priv in privs:
        try:
            require_priv([priv])
            return
        except PermissionDenied as exc:
            refused = refused or exc
    assert refused is not None
    raise PermissionDenied(str(refused).replace(privs[0], "|".join(privs), 1), refused.status)


def device_part(value: str, default_key: str, key: str | None = None) -> str | None:
    """One key of a property string (``[host=]0000:01:00.0,pcie=1``)."""
    for number, item in enumerate(p for p in value.split(",") if p):
        name, sep, text = item.partition("=")
        if sep and name == (key or default_key):
            return text
        if not sep and number == 0 and key in (None, default_key):
            return item
    return None


def check_qemu_device(option: str, value: str, require_priv, require_path, *,
                      deleting: bool = False) -> None:
    """qemu-server src/PVE/API2/Qemu.pm ``check_hostpci_perm`` / ``check_usb_perm`` /
    ``check_dir_perm`` and the serial rules of create and ``update_vm`` (the same checks run
    on the current value when a token deletes the option)."""
    if option.startswith("hostpci"):
        if device_part(value, "host", "mapping") is None:
            raise PermissionDenied(f"only root can set '{option}' config for non-mapped devices",
                                   status=500)
        require_path(f"/mapping/pci/{device_part(value, 'host', 'mapping')}", ["Mapping.Use"])
        require_priv(["VM.Config.HWType"])
        if device_part(value, "host", "romfile") is not None:
            from restoredrill.lab.proxmox.routing import param_error   # routing imports this module
            raise param_error(option, "only root@pam can set 'romfile' option")
        return
    if option.startswith("usb"):
        require_priv(["VM.Config.HWType"])
        mapping, host = device_part(value, "host", "mapping"), device_part(value, "host")
        if host is not None and host.lower() != "spice":
            raise PermissionDenied(f"only root can set '{option}' config for real devices",
                                   status=500)
        if host is None and mapping is not None:
            require_path(f"/mapping/usb/{mapping}", ["Mapping.Use"])
        return
    if option.startswith("virtiofs"):
        require_priv(["VM.Config.Disk"])
        require_path(f"/mapping/dir/{device_part(value, 'dirid')}", ["Mapping.Use"])
        return
    if option.startswith("serial") and value == "socket":
        require_priv(["VM.Config.HWType"])
        return
    if option.startswith("serial"):
        verb = "delete" if deleting else "set"
        raise PermissionDenied(f"only root can {verb} '{option}' config for real devices",
                               status=500)


def check_lxc_option(option: str, value: str | None, require_priv, *, deleting: bool = False
                     ) -> None:
    """One option a token sets or deletes on a container (pve-container's rules)."""
    if option in ("cores", "cpuunits", "cpulimit"):
        require_priv(["VM.Config.CPU"])
    elif option == "rootfs" or re.fullmatch(r"mp\d+", option):
        require_priv(["VM.Config.Disk"])
        if not deleting and value and mount_point_type(value) != "volume":
            raise PermissionDenied(f"mount point type {mount_point_type(value)} is only "
                                   "allowed for root@pam")
    elif option in ("memory", "swap"):
        require_priv(["VM.Config.Memory"])
    elif re.fullmatch(r"net\d+", option) or option in ("nameserver", "searchdomain", "hostname"):
        require_priv(["VM.Config.Network"])
    elif re.fullmatch(r"dev\d+", option):
        raise PermissionDenied("configuring device passthrough is only allowed for root@pam")
    elif option == "features":
        flags = {p.split("=")[0] for p in (value or "").split(",") if p}
        if flags - {"nesting"}:
            raise PermissionDenied("changing feature flags (except nesting) is only allowed "
                                   "for root@pam")
        require_priv(["VM.Allocate"])
    elif option == "hookscript":
        raise PermissionDenied("changing the hookscript is only allowed for root@pam")
    else:
        require_priv(["VM.Config.Options"])


def mount_point_type(value: str) -> str:
    """``volume`` (storage:name), ``bind`` (an absolute path) or ``device`` (/dev/...)."""
    volume = value.split(",", 1)[0].removeprefix("volume=")
    if volume.startswith("/dev/"):
        return "device"
    return "bind" if volume.startswith("/") else "volume"


def bridge_acl_path(net_value: str) -> str | None:
    """``check_vnet_access``: SDN.Use on /sdn/zones/localnetwork/<bridge> for a netN."""
    match = re.search(r"(?:^|,)bridge=([^,]+)", net_value)
    return f"/sdn/zones/localnetwork/{match.group(1)}" if match else None
