"""PBS client-side encryption: key, id key, keyed chunk digests, fingerprint, signature.

From a 32-byte key PBS derives ``id_key = PBKDF2-HMAC-SHA256(key, b"_id_key", 10, 32)``.
Encrypted chunks are named by ``SHA-256(plaintext || id_key)``, the key fingerprint is
``SHA-256(FINGERPRINT_INPUT || id_key)`` and the manifest signature is
``HMAC-SHA256(id_key, canonical_json(manifest - unprotected - signature))``.
Blobs are AES-256-GCM with the key itself, a random 16-byte IV, empty AAD and a
16-byte tag.

Canonical JSON (our choice, matching PBS's published test vector): object keys sorted
by code point (same order as UTF-8 bytes), no whitespace at all (``","`` and ``":"``
separators), non-ASCII characters written as UTF-8 rather than ``\\u`` escapes, NaN
and infinity refused, encoded as UTF-8.

Key file (unencrypted PBS key file, ``kdf: null``)::

    {"kdf": null, "created": "2024-05-01T02:00:03Z", "modified": "2024-05-01T02:00:03Z",
     "data": "<base64 of the 32-byte key>", "fingerprint": "aa:bb:...:ff"}

Password-protected key files (kdf scrypt/pbkdf2) are refused with a clear error.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from restoredrill.pbsformat.blob import DecryptionFailed, FormatError

KEY_SIZE = 32
IV_SIZE = 16
TAG_SIZE = 16
FINGERPRINT_INPUT = hashlib.sha256(b"Proxmox Backup Encryption Key Fingerprint").digest()
UNSIGNED_MANIFEST_KEYS = ("unprotected", "signature")


class KeyFileError(FormatError):
    pass


class CryptConfig:
    """A PBS encryption key and everything derived from it. Never logs or prints the key."""

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
            raise ValueError(f"a PBS encryption key is exactly {KEY_SIZE} bytes")
        self._key = bytes(key)
        self.id_key = hashlib.pbkdf2_hmac("sha256", self._key, b"_id_key", 10, KEY_SIZE)
        self._aead = AESGCM(self._key)

    def __repr__(self) -> str:
        return f"CryptConfig(fingerprint={self.fingerprint()!r})"

    @classmethod
    def generate(cls) -> CryptConfig:
        return cls(os.urandom(KEY_SIZE))

    @property
    def key(self) -> bytes:
        return self._key

    def compute_digest(self, data: bytes) -> bytes:
        """SHA-256(data || id_key): the id key last, against length extension."""
        return hashlib.sha256(bytes(data) + self.id_key).digest()

    def chunk_digest(self, plain: bytes) -> bytes:
        return self.compute_digest(plain)

    def fingerprint_bytes(self) -> bytes:
        return self.compute_digest(FINGERPRINT_INPUT)

    def fingerprint(self) -> str:
        return format_fingerprint(self.fingerprint_bytes())

    def compute_auth_tag(self, data: bytes) -> bytes:
        return hmac.new(self.id_key, data, hashlib.sha256).digest()

    def sign_manifest(self, manifest: dict[str, Any]) -> str:
        """Hex HMAC-SHA256 of the canonical JSON of ``manifest`` minus unsigned keys."""
        return self.compute_auth_tag(signed_manifest_bytes(manifest)).hex()

    def encrypt(self, plain: bytes, iv: bytes | None = None) -> tuple[bytes, bytes, bytes]:
        """Return (iv, tag, ciphertext); a fresh random IV unless one is given."""
        iv = os.urandom(IV_SIZE) if iv is None else iv
        sealed = self._aead.encrypt(iv, bytes(plain), b"")
        return iv, sealed[-TAG_SIZE:], sealed[:-TAG_SIZE]

    def decrypt(self, iv: bytes, tag: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(iv, bytes(ciphertext) + tag, b"")
        except InvalidTag:
            raise DecryptionFailed(
                f"AES-GCM tag check failed: wrong key (this key is {self.fingerprint()}) "
                "or tampered ciphertext") from None


def chunk_digest(plain: bytes, crypt: CryptConfig | None = None) -> bytes:
    """The digest a chunk is stored under: keyed with ``crypt``, plain SHA-256 without."""
    return crypt.chunk_digest(plain) if crypt else hashlib.sha256(plain).digest()


def format_fingerprint(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signed_manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in manifest.items()
                           if k not in UNSIGNED_MANIFEST_KEYS})


def verify_manifest_signature(manifest: dict[str, Any], crypt: CryptConfig) -> bool:
    signature = manifest.get("signature")
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(signature.lower(), crypt.sign_manifest(manifest))


def render_key_file(crypt: CryptConfig, created: datetime | None = None) -> str:
    """The JSON text of an unencrypted (``kdf: null``) PBS key file."""
    stamp = _rfc3339(created or datetime.now(timezone.utc))
    return json.dumps({"kdf": None, "created": stamp, "modified": stamp,
                       "data": base64.b64encode(crypt.key).decode("ascii"),
                       "fingerprint": crypt.fingerprint()}, indent=2) + "\n"


def parse_key_file(text: str | bytes) -> CryptConfig:
    """Read an unencrypted PBS key file; checks the stored fingerprint when present."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise KeyFileError("key file JSON nests too deep to parse (not a PBS key file)") from None
    except ValueError as exc:
        raise KeyFileError(f"key file is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "data" not in doc:
        raise KeyFileError("key file has no 'data' field")
    if doc.get("kdf") is not None:
        raise KeyFileError("password-protected key files (kdf "
                           f"{sorted(doc['kdf']) if isinstance(doc['kdf'], dict) else doc['kdf']})"
                           " are not supported; export the key without a password")
    try:
        key = base64.b64decode(doc["data"], validate=True)
    except (ValueError, TypeError):
        raise KeyFileError("key file 'data' is not base64") from None
    if len(key) != KEY_SIZE:
        raise KeyFileError(f"key file 'data' holds {len(key)} bytes, expected {KEY_SIZE}")
    crypt = CryptConfig(key)
    stored = doc.get("fingerprint")
    if stored is not None and str(stored).lower() != crypt.fingerprint():
        raise KeyFileError(f"key file fingerprint {stored} does not match its key "
                           f"({crypt.fingerprint()})")
    return crypt


def read_key_file(path: str | os.PathLike[str]) -> CryptConfig:
    return parse_key_file(Path(path).read_bytes())


def write_key_file(path: str | os.PathLike[str], crypt: CryptConfig,
                   created: datetime | None = None) -> None:
    """Write the key file with mode 0600 (created that way, never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render_key_file(crypt, created))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
