"""Key derivation, digests, fingerprint, manifest signature and key files."""
import base64
import hashlib
import json
import os
import stat
from datetime import datetime, timezone

import pytest

from restoredrill.pbsformat.crypt import (FINGERPRINT_INPUT, CryptConfig, KeyFileError,
                                          canonical_json, chunk_digest, parse_key_file,
                                          read_key_file, render_key_file,
                                          verify_manifest_signature, write_key_file)

KEY = bytes(range(32))


def pbs_test_key() -> CryptConfig:
    """The key of PBS's own manifest signature test: scrypt('test', salt '', 65536, 8, 1)."""
    return CryptConfig(hashlib.scrypt(b"test", salt=b"", n=65536, r=8, p=1,
                                      maxmem=256 * 1024 * 1024, dklen=32))


def test_id_key_is_pbkdf2_of_the_key():
    expected = hashlib.pbkdf2_hmac("sha256", KEY, b"_id_key", 10, 32)
    assert CryptConfig(KEY).id_key == expected


def test_chunk_digest_keyed_and_plain():
    crypt = CryptConfig(KEY)
    assert chunk_digest(b"abc") == hashlib.sha256(b"abc").digest()
    assert chunk_digest(b"abc", crypt) == hashlib.sha256(b"abc" + crypt.id_key).digest()
    assert crypt.chunk_digest(b"abc") != CryptConfig(bytes(32)).chunk_digest(b"abc")


def test_fingerprint_is_32_colon_separated_hex_pairs():
    crypt = CryptConfig(KEY)
    assert FINGERPRINT_INPUT.hex().startswith("6ed0ef77471fff4d")
    fingerprint = crypt.fingerprint()
    assert len(fingerprint.split(":")) == 32
    assert all(len(pair) == 2 and pair == pair.lower() for pair in fingerprint.split(":"))
    expected = hashlib.sha256(FINGERPRINT_INPUT + crypt.id_key).hexdigest()
    assert fingerprint.replace(":", "") == expected
    assert "fingerprint" in repr(crypt) and KEY.hex() not in repr(crypt)


def test_manifest_signature_matches_pbs_known_answer():
    """Vector from proxmox-backup's manifest.rs test (host/elsa/2020-06-26T13:56:05Z)."""
    manifest = {
        "backup-type": "host", "backup-id": "elsa",
        "backup-time": int(datetime(2020, 6, 26, 13, 56, 5, tzinfo=timezone.utc).timestamp()),
        "files": [
            {"filename": "test1.img.fidx", "crypt-mode": "encrypt", "size": 200,
             "csum": (b"\x01" * 32).hex()},
            {"filename": "abc.blob", "crypt-mode": "none", "size": 200,
             "csum": (b"\x02" * 32).hex()}],
        "unprotected": {"note": "This is not protected by the signature."},
        "signature": None}
    crypt = pbs_test_key()
    signature = crypt.sign_manifest(manifest)
    assert signature == "d7b446fb7db081662081d4b40fedd858a1d6307a5aff4ecff7d5bf4fd35679e9"
    manifest["signature"] = signature
    manifest["unprotected"]["verify_state"] = {"state": "ok"}
    assert verify_manifest_signature(manifest, crypt)
    manifest["files"][1]["size"] = 201
    assert not verify_manifest_signature(manifest, crypt)


def test_canonical_json_is_sorted_and_without_whitespace():
    expected = '{"a":[true,null,"é"],"b":1}'.encode()
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == expected
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_encrypt_decrypt_round_trip_with_fresh_ivs():
    crypt = CryptConfig(KEY)
    iv1, tag1, ct1 = crypt.encrypt(b"hello")
    iv2, _, ct2 = crypt.encrypt(b"hello")
    assert len(iv1) == 16 and len(tag1) == 16 and iv1 != iv2 and ct1 != ct2
    assert crypt.decrypt(iv1, tag1, ct1) == b"hello"


def test_key_must_be_32_bytes():
    with pytest.raises(ValueError, match="32 bytes"):
        CryptConfig(b"short")


def test_key_file_round_trip_and_format(tmp_path):
    crypt = CryptConfig.generate()
    path = tmp_path / "backup.key"
    write_key_file(path, crypt, created=datetime(2024, 5, 1, 2, 0, 3, tzinfo=timezone.utc))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["kdf"] is None and doc["created"] == "2024-05-01T02:00:03Z"
    assert base64.b64decode(doc["data"]) == crypt.key
    assert doc["fingerprint"] == crypt.fingerprint()
    assert read_key_file(path).key == crypt.key


def test_key_file_errors():
    good = json.loads(render_key_file(CryptConfig(KEY)))
    with pytest.raises(KeyFileError, match="not supported"):
        parse_key_file(json.dumps({**good, "kdf": {"Scrypt": {"n": 65536}}}))
    with pytest.raises(KeyFileError, match="does not match"):
        parse_key_file(json.dumps({**good, "fingerprint": "00:" * 31 + "00"}))
    with pytest.raises(KeyFileError, match="holds 3 bytes"):
        parse_key_file(json.dumps({**good, "data": base64.b64encode(b"abc").decode()}))
    with pytest.raises(KeyFileError, match="not JSON"):
        parse_key_file("{")
    without_fingerprint = {k: v for k, v in good.items() if k != "fingerprint"}
    assert parse_key_file(json.dumps(without_fingerprint)).key == KEY
