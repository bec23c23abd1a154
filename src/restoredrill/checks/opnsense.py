"""OPNsense configuration exports: parse, decrypt (and encrypt, for the lab), compare.

A plain export is one XML document with root ``<opnsense>``. OPNsense itself loads any
well-formed XML (opnsense/core src/opnsense/mvc/app/library/OPNsense/Core/Config.php,
``loadFromStream``: ``simplexml_load_string``, nothing more), so a usable export is what a
restore needs: root ``<opnsense>``, ``<system><hostname>`` and at least one interface. There
is no top-level ``<version>`` in a current export (the factory default,
src/etc/config.xml.sample, dropped it in 2017; old installs may still carry one such as
``11.2``, a config-format number, never the release): the release comes only from the
encrypted header's ``Version:`` line, else it is "unknown". Firewall rules sit in the legacy
``<filter><rule>`` and in the MVC ``<OPNsense><Firewall><Filter><rules><rule>`` (the sample's
``<filter>`` is empty): both are counted, neither is required. An encrypted export is
OPNsense's armored text::

    ---- BEGIN config.xml ----
    Version: OPNsense 25.7.10
    Cipher: AES-256-CBC
    PBKDF2: 100000
    Hash: SHA512

    <base64, 76-character lines, of b"Salted__" + 8-byte salt + AES-256-CBC ciphertext>
    ---- END config.xml ----

as ``openssl enc -aes-256-cbc -md sha512 -pbkdf2 -iter 100000`` writes it (key and IV
from PBKDF2-HMAC-SHA512, PKCS#7 padding). Older releases wrote ``Hash: MD5`` and no
``PBKDF2:`` line (``openssl enc -aes-256-cbc -md md5``: EVP_BytesToKey, MD5, one
round). The KDF is chosen from the header lines. Parsing uses defusedxml and refuses
DOCTYPEs and entities, a pfSense root, HTML and truncated files, encodings expat cannot
read, and documents over MAX_XML_DEPTH deep, MAX_XML_ELEMENTS elements or MAX_EXPORT_BYTES;
no refusal quotes the file's content. Pure functions.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

SALT_MAGIC = b"Salted__"
DEFAULT_ITERATIONS = 100_000
MAX_ITERATIONS = 10_000_000
ARMOR_LINE = 76
# Bounds on a plain export. opnsense/core's src/etc/config.xml.sample nests 7 elements deep
# (opnsense/OPNsense/Firewall/Filter/rules/rule/enabled) and the deepest MVC model mount plus
# its items (src/opnsense/mvc/app/models/**, e.g. //OPNsense/Kea/dhcp4) about 11: 64 is far
# beyond any real config. A large config (5,000 rules, as many DHCP mappings) has some 10^5
# elements; 500,000 cost about 2 s and 40 MiB to refuse. The byte cap matches the SFTP
# reader's (clients/sftp.py MAX_READ_BYTES).
MAX_XML_DEPTH = 64
MAX_XML_ELEMENTS = 500_000
MAX_EXPORT_BYTES = 64 * 1024 * 1024
_SAFE_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_BEGIN = re.compile(r"^---- BEGIN (\S+) ----$")
_HEADER = re.compile(r"^([A-Za-z0-9-]+):\s*(.*)$")


class ExportError(ValueError):
    """An export that cannot be used; the message says what is wrong (never the passphrase)."""


class WrongPassphrase(ExportError):
    pass


UNKNOWN_RELEASE = "unknown"
# "Version: OPNsense 25.7.10" (Backup/Base.php encrypt: "Version: {product} {version}"); the
# release shown must be a plain version string, whatever the header holds.
_RELEASE = re.compile(r"OPNsense\s+(\d{1,4}(?:\.\d{1,4}){1,3}(?:[._-][A-Za-z0-9]{1,12})?)")
_CONFIG_FORMAT = re.compile(r"\d{1,4}(?:\.\d{1,4}){0,3}")


@dataclass(frozen=True)
class OpnsenseConfig:
    hostname: str
    domain: str
    revision_time: datetime | None
    revision_description: str
    interfaces: tuple[str, ...]
    legacy_rules: int                   # <filter><rule>
    mvc_rules: int                      # <OPNsense><Firewall><Filter><rules><rule>
    sections: tuple[str, ...] = field(default=(), repr=False)
    release: str = UNKNOWN_RELEASE      # from the encrypted header only
    config_format: str | None = None    # an old install's top-level <version>, if any

    @property
    def filter_rules(self) -> int:
        return self.legacy_rules + self.mvc_rules

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.domain}" if self.domain else self.hostname

    def facts(self) -> dict:
        facts = {"opnsense_release": self.release, "hostname": self.fqdn,
                 "revision_time": self.revision_time.isoformat() if self.revision_time else None,
                 "revision_description": self.revision_description[:200],
                 "interfaces": ",".join(self.interfaces), "filter_rules": self.filter_rules,
                 "filter_rules_legacy": self.legacy_rules, "filter_rules_mvc": self.mvc_rules}
        if self.config_format:
            facts["config_format"] = self.config_format
        return facts



# --- parsing ----------------------------------------------------------------------------

def parse_config(data: bytes) -> OpnsenseConfig:
    """Parse a plain export and check it is a complete OPNsense configuration."""
    text_start = data.lstrip()[:200].lower()
    if not data.strip():
        raise ExportError("the file is empty")
    if text_start.startswith(b"---- begin"):
        raise ExportError("the file is an encrypted export: decrypt it first")
    if text_start.startswith((b"<!doctype html", b"<html")):
        raise ExportError("the file is an HTML page, not a configuration (a login or error page "
                          "saved instead of the export?)")
    if len(data) > MAX_EXPORT_BYTES:
        raise ExportError(f"refused: the file is {len(data):,} bytes, more than the {MAX_EXPORT_BYTES:,}-byte "
                          "limit for an OPNsense export")
    return read_config_tree(_parse_xml(data))


class _BoundedTreeBuilder(TreeBuilder):
    """An ElementTree builder that stops a document nested deeper than MAX_XML_DEPTH or holding
    more than MAX_XML_ELEMENTS elements, while expat is still reading it (expat itself is not
    recursive, so without this a 100,000-deep document parses and is accepted)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.elements = 0

    def start(self, tag, attrs):
        self.depth += 1
        self.elements += 1
        if self.depth > MAX_XML_DEPTH:
            raise ExportError(f"refused: the XML nests more than {MAX_XML_DEPTH} elements deep; an OPNsense "
                              "export nests about 10 (a damaged or hostile file)")
        if self.elements > MAX_XML_ELEMENTS:
            raise ExportError(f"refused: the XML holds more than {MAX_XML_ELEMENTS:,} elements, far more "
                              "than an OPNsense export (a damaged or hostile file)")
        return super().start(tag, attrs)

    def end(self, tag):
        self.depth -= 1
        return super().end(tag)


def _parse_xml(data: bytes) -> Element:
    """The root element, parsed by defusedxml (no DTD, entity or external reference) within the
    depth and element bounds; every refusal is an ExportError that quotes none of the file."""
    parser = DefusedXMLParser(target=_BoundedTreeBuilder(), forbid_dtd=True, forbid_entities=True,
                              forbid_external=True)
    try:
        parser.feed(data)
        return parser.close()
    except ExportError:
        raise
    except DefusedXmlException as exc:
        raise ExportError(f"refused: the XML holds a DOCTYPE or entity declaration ({type(exc).__name__}); "
                          "an OPNsense export never does") from None
    except ParseError as exc:
        raise ExportError(f"not well-formed XML ({_explain_parse_error(exc)})") from None
    except (LookupError, ValueError):
        # pyexpat: LookupError for an unknown declared encoding, ValueError "multi-byte encodings
        # are not supported" for e.g. UTF-7 (Modules/pyexpat.c PyUnknownEncodingHandler).
        raise ExportError("not well-formed XML: its declaration names a character encoding the parser "
                          "cannot read (OPNsense writes UTF-8)") from None


def _explain_parse_error(exc: ParseError) -> str:
    text = str(exc)
    if "no element found" in text or "unclosed token" in text:
        return f"truncated: {text}"
    return text


def read_config_tree(root: Element) -> OpnsenseConfig:
    if root.tag.lower() == "pfsense":
        raise ExportError("root element is <pfsense>: this is a pfSense configuration, not OPNsense; "
                          "restoredrill reads OPNsense exports only")
    if root.tag.lower() == "html":
        raise ExportError("the file is an HTML page, not a configuration")
    if root.tag != "opnsense":
        shown = f"<{root.tag}>" if _SAFE_TAG.fullmatch(root.tag) else "another element"
        raise ExportError(f"root element is {shown}, expected <opnsense>")
    missing = [path for path in ("system/hostname", "interfaces") if root.find(path) is None]
    if missing:
        raise ExportError(f"incomplete configuration: no {', '.join('<' + m + '>' for m in missing)}")
    hostname = (root.findtext("system/hostname") or "").strip()
    if not hostname:
        raise ExportError("incomplete configuration: empty <system/hostname>")
    interfaces = tuple(child.tag for child in root.find("interfaces"))
    if not interfaces:
        raise ExportError("incomplete configuration: <interfaces> has no interface")
    old_format = (root.findtext("version") or "").strip()
    return OpnsenseConfig(hostname, (root.findtext("system/domain") or "").strip(),
                          revision_time(root), (root.findtext("revision/description") or "").strip(),
                          interfaces, len(root.findall("filter/rule")),
                          len(root.findall("OPNsense/Firewall/Filter/rules/rule")),
                          tuple(child.tag for child in root),
                          config_format=old_format if _CONFIG_FORMAT.fullmatch(old_format) else None)


def release_of(headers: dict[str, str]) -> str:
    """The release an encrypted export names in its ``Version:`` header ("25.7.10"), else
    "unknown"; a pfSense header is refused by name."""
    value = headers.get("Version", "")
    if value.lower().startswith("pfsense"):
        raise ExportError("the export's header says pfSense: this is a pfSense configuration, not OPNsense; "
                          "restoredrill reads OPNsense exports only")
    match = _RELEASE.fullmatch(value.strip())
    return match.group(1) if match else UNKNOWN_RELEASE


def revision_time(root: Element) -> datetime | None:
    """``<revision><time>`` (epoch seconds, maybe with a fraction) as an aware UTC time."""
    text = (root.findtext("revision/time") or "").strip()
    try:
        return datetime.fromtimestamp(float(text), timezone.utc) if text else None
    except (ValueError, OverflowError, OSError):
        return None


# --- the armored encrypted format -----------------------------------------------------------

def is_encrypted_export(data: bytes) -> bool:
    return data.lstrip().startswith(b"---- BEGIN ")


@dataclass(frozen=True)
class Armor:
    tag: str
    headers: dict[str, str]
    payload: bytes


def parse_armor(data: bytes) -> Armor:
    """Split the armored text into tag, header lines and the base64-decoded payload."""
    try:
        lines = data.decode("ascii").strip().splitlines()
    except UnicodeDecodeError:
        raise ExportError("encrypted export is not ASCII text") from None
    begin = _BEGIN.match(lines[0].strip()) if lines else None
    if not begin:
        raise ExportError("encrypted export lacks its '---- BEGIN config.xml ----' line")
    tag = begin.group(1)
    if lines[-1].strip() != f"---- END {tag} ----":
        raise ExportError(f"encrypted export is truncated: no '---- END {tag} ----' line")
    headers, body = {}, []
    for line in lines[1:-1]:
        match = _HEADER.match(line.strip())
        if match and not body:
            headers[match.group(1)] = match.group(2).strip()
        elif line.strip():
            body.append(line.strip())
    try:
        payload = base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise ExportError("encrypted export body is not valid base64 (damaged or truncated)") from None
    return Armor(tag, headers, payload)


def choose_kdf(headers: dict[str, str]) -> tuple[str, int]:
    """("pbkdf2-sha512", iterations) or ("md5", 1), from the ``PBKDF2:`` and ``Hash:`` lines."""
    cipher = headers.get("Cipher", "AES-256-CBC").upper()
    if cipher != "AES-256-CBC":
        raise ExportError(f"unsupported cipher {_shown(cipher)} (OPNsense writes AES-256-CBC)")
    digest = headers.get("Hash", "MD5").upper().replace("-", "")
    if "PBKDF2" in headers:
        try:
            iterations = int(headers["PBKDF2"])
        except ValueError:
            raise ExportError(f"PBKDF2 header {_shown(headers['PBKDF2'])} is not a number") from None
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ExportError(f"PBKDF2 iteration count {iterations} out of range 1..{MAX_ITERATIONS}")
        if digest not in ("SHA512", "SHA256"):
            raise ExportError(f"unsupported PBKDF2 hash {_shown(headers.get('Hash'))}")
        return f"pbkdf2-{digest.lower()}", iterations
    if digest != "MD5":
        raise ExportError(f"unsupported key derivation: Hash {_shown(headers.get('Hash'))} without PBKDF2")
    return "md5", 1


def _shown(value: str | None) -> str:
    """A header value for a message: quoted when short plain text, else only its length."""
    if value is not None and len(value) <= 40 and value.isascii() and value.isprintable():
        return repr(value)
    return "(missing)" if value is None else f"(a {len(value)}-character value)"


def derive_key_iv(passphrase: str, salt: bytes, kdf: str, iterations: int) -> tuple[bytes, bytes]:
    secret = passphrase.encode("utf-8")
    if kdf.startswith("pbkdf2-"):
        material = hashlib.pbkdf2_hmac(kdf.removeprefix("pbkdf2-"), secret, salt, iterations, 48)
    else:
        material = evp_bytes_to_key_md5(secret, salt, 48)
    return material[:32], material[32:48]


def evp_bytes_to_key_md5(secret: bytes, salt: bytes, length: int) -> bytes:
    """OpenSSL's EVP_BytesToKey with MD5 and one round (``openssl enc -md md5``)."""
    out, block = b"", b""
    while len(out) < length:
        block = hashlib.md5(block + secret + salt).digest()
        out += block
    return out[:length]


def decrypt_export(data: bytes, passphrase: str) -> bytes:
    """The plaintext config.xml of an armored export; ``WrongPassphrase`` when it does not open."""
    armor = parse_armor(data)
    kdf, iterations = choose_kdf(armor.headers)
    payload = armor.payload
    if not payload.startswith(SALT_MAGIC) or len(payload) < 32:
        raise ExportError("encrypted payload does not start with OpenSSL's 'Salted__' header")
    salt, ciphertext = payload[8:16], payload[16:]
    if len(ciphertext) % 16:
        raise ExportError(f"ciphertext length {len(ciphertext)} is not a multiple of 16: truncated")
    key, iv = derive_key_iv(passphrase, salt, kdf, iterations)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise WrongPassphrase(f"wrong passphrase: the export did not decrypt (bad padding; key derived "
                              f"with {kdf}, {iterations} iteration(s))") from None
    if not plain.lstrip().startswith(b"<"):
        raise WrongPassphrase("wrong passphrase: the decrypted data is not XML")
    return plain


def encrypt_export(plain: bytes, passphrase: str, *, kdf: str = "pbkdf2-sha512",
                   iterations: int = DEFAULT_ITERATIONS, version: str = "25.7.10",
                   tag: str = "config.xml", salt: bytes | None = None) -> bytes:
    """OPNsense's armored export (``kdf="md5"`` for the old format), for the lab and tests."""
    salt = os.urandom(8) if salt is None else salt
    if len(salt) != 8:
        raise ValueError("the OpenSSL salt is 8 bytes")
    key, iv = derive_key_iv(passphrase, salt, kdf, iterations if kdf != "md5" else 1)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    payload = SALT_MAGIC + salt + encryptor.update(padded) + encryptor.finalize()
    encoded = base64.b64encode(payload).decode("ascii")
    body = "".join(encoded[i:i + ARMOR_LINE] + "\n" for i in range(0, len(encoded), ARMOR_LINE))
    headers = [f"Version: OPNsense {version}", "Cipher: AES-256-CBC"]
    if kdf == "md5":
        headers.append("Hash: MD5")
    else:
        headers += [f"PBKDF2: {iterations}", f"Hash: {kdf.removeprefix('pbkdf2-').upper()}"]
    text = f"---- BEGIN {tag} ----\n" + "\n".join(headers) + "\n\n" + body + f"---- END {tag} ----\n"
    return text.encode("ascii")


def read_export(data: bytes, passphrase: str | None) -> tuple[OpnsenseConfig, str | None]:
    """(parsed config, how it was encrypted or None): decrypts armored exports first."""
    if is_encrypted_export(data):
        if passphrase is None:
            raise ExportError("the export is encrypted but no passphrase reference is configured "
                              "(offsite.config_exports[].passphrase)")
        headers = parse_armor(data).headers
        release = release_of(headers)
        kdf, iterations = choose_kdf(headers)
        how = f"AES-256-CBC, {kdf}" + (f", {iterations} iterations" if kdf != "md5" else " (old format)")
        return replace(parse_config(decrypt_export(data, passphrase)), release=release), how
    return parse_config(data), None


# --- choosing the newest export and comparing with the live firewall ---------------------------

@dataclass
class ExportFile:
    """One file on the box: name, mtime, and what reading it gave."""

    path: str
    mtime: datetime
    size: int
    config: OpnsenseConfig | None = None
    encrypted: bool = False
    kdf: str | None = None
    error: str | None = None

    @property
    def revision(self) -> datetime | None:
        return self.config.revision_time if self.config else None


def order_exports(files: Iterable[ExportFile]) -> list[ExportFile]:
    """Newest first by the ``<revision><time>`` inside; mtime only breaks ties or places
    files whose revision is unknown."""
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(files, key=lambda f: (f.revision or epoch, f.mtime), reverse=True)


def newest_good(files: Iterable[ExportFile]) -> ExportFile | None:
    for export in order_exports(files):
        if export.config is not None and export.revision is not None:
            return export
    return None


def compare_with_live(newest: OpnsenseConfig, live: OpnsenseConfig) -> list[str]:
    """A live revision newer than the newest export means the offsite copy is stale.

    ``live`` is the running config (``GET /api/core/backup/download/this``, parsed).
    """
    problems = []
    if live.revision_time and newest.revision_time and live.revision_time > newest.revision_time:
        problems.append(f"the firewall's running config changed at {live.revision_time:%Y-%m-%d %H:%M} UTC "
                        f"({live.revision_description or 'no description'}), after the newest export "
                        f"({newest.revision_time:%Y-%m-%d %H:%M} UTC): the offsite copy is stale")
    if live.fqdn != newest.fqdn:
        problems.append(f"the newest export is of {newest.fqdn}, the live firewall is {live.fqdn}")
    return problems
