"""Hostile OPNsense exports through ``opnsense.read_export``, the call the offsite export drill makes
on the bytes it fetched over SFTP (fixtures/offsite.py ``ExportDrill._parse``, which turns an
``ExportError`` into the file's error and lets every other exception escape as a crash).

Each input must raise ExportError (nothing else) with a clear message, read no file (the
entity points at the hostile-secret file and /etc/shadow), open no connection (a listening
socket counts them), and stay within a time and memory bound.
"""
from __future__ import annotations

import socket
import time
import tracemalloc

import pytest

from restoredrill.checks import opnsense
from tests.hostile.conftest import Secrets, with_known_defects

GOOD_BODY = ("<system><hostname>fw</hostname><domain>lan</domain></system>"
             "<interfaces><lan/></interfaces><filter><rule/></filter>")
MAX_SECONDS = 5.0
MAX_PEAK_BYTES = 64 << 20
ENCRYPTION_KEY = "hostile-export-passphrase"
ARMOR = (b"---- BEGIN config.xml ----\nVersion: OPNsense 25\nCipher: AES-256-CBC\nPBKDF2: ITER\nHash: SHA512\n\n"
         b"BODY\n---- END config.xml ----\n")


def _doc(prolog: str, body: str = GOOD_BODY, encoding: str = "utf-8") -> bytes:
    return (prolog + f"<opnsense>{body}</opnsense>").encode(encoding)


def _laughs() -> bytes:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    return _doc(f"<?xml version=\"1.0\"?><!DOCTYPE opnsense [{entities}]>",
                GOOD_BODY.replace("<hostname>fw", "<hostname>&lol9;"))


def _quadratic() -> bytes:
    return _doc(f'<!DOCTYPE opnsense [<!ENTITY a "{"x" * 100_000}">]>',
                GOOD_BODY.replace("<hostname>fw", "<hostname>" + "&a;" * 1000))


def _nested(depth: int) -> bytes:
    return _doc("", "<a>" * depth + "</a>" * depth + GOOD_BODY)


def inputs(secret: str, url: str) -> list[tuple[str, bytes, str]]:
    """(id, export bytes, a fragment the message must hold)."""
    return [
        ("billion-laughs", _laughs(), "DOCTYPE"),
        ("quadratic-blowup", _quadratic(), "DOCTYPE"),
        ("external-entity-secret-file",
         _doc(f'<!DOCTYPE opnsense [<!ENTITY x SYSTEM "file://{secret}">]>',
              GOOD_BODY.replace("<hostname>fw", "<hostname>&x;")), "DOCTYPE"),
        ("external-entity-etc-shadow",
         _doc('<!DOCTYPE opnsense [<!ENTITY x SYSTEM "file:///etc/shadow">]>',
              GOOD_BODY.replace("<hostname>fw", "<hostname>&x;")), "DOCTYPE"),
        ("external-entity-network-url",
         _doc(f'<!DOCTYPE opnsense [<!ENTITY x SYSTEM "{url}">]>',
              GOOD_BODY.replace("<hostname>fw", "<hostname>&x;")), "DOCTYPE"),
        ("external-dtd-network-url", _doc(f'<!DOCTYPE opnsense SYSTEM "{url}">'), "DOCTYPE"),
        ("parameter-entity-network", _doc(f'<!DOCTYPE opnsense [<!ENTITY % p SYSTEM "{url}"> %p;]>'), "DOCTYPE"),
        ("bare-doctype", _doc("<!DOCTYPE opnsense>"), "DOCTYPE"),
        ("xinclude-secret",
         _doc("", GOOD_BODY.replace("<hostname>fw</hostname>", '<hostname><xi:include '
              f'xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{secret}" parse="text"/></hostname>')),
         "hostname"),
        ("nesting-100k-deep", _nested(100_000), "XML"),
        ("declared-utf16-but-utf8", _doc('<?xml version="1.0" encoding="UTF-16"?>'), "XML"),
        ("declared-ascii-with-latin1-bytes",
         _doc('<?xml version="1.0" encoding="us-ascii"?>', GOOD_BODY.replace("fw", "f\u00e9"), "latin-1"), "XML"),
        ("unknown-encoding", _doc('<?xml version="1.0" encoding="x-hostile-7"?>'), "XML"),
        ("invalid-utf8-bytes", _doc("").replace(b"<hostname>fw", b"<hostname>\xff\xfe\xc0"), "XML"),
        ("declared-utf8-but-utf16", _doc('<?xml version="1.0" encoding="UTF-8"?>', encoding="utf-16"), "encoding"),
        ("declared-utf7", _doc('<?xml version="1.0" encoding="UTF-7"?>'), "XML"),
        ("nul-bytes", _doc("").replace(b"fw", b"f\x00w"), "XML"),
        ("truncated", _doc("")[:-20], "truncated"),
        ("html-login-page", b"<!DOCTYPE html><html><body>login</body></html>", "HTML"),
        ("pfsense-root", b"<pfsense><version>1</version></pfsense>", "pfSense"),
        ("huge-attribute-count", _doc("", GOOD_BODY.replace("<filter>", "<filter " + " ".join(
            f'a{i}="x"' for i in range(20_000)) + ">").replace("<interfaces><lan/></interfaces>", "<interfaces/>")),
         "no interface"),
        ("armor-bad-base64", ARMOR.replace(b"ITER", b"100000").replace(b"BODY", b"!!!notbase64!!!"), "base64"),
        ("armor-huge-iterations",
         ARMOR.replace(b"ITER", b"99999999999999999999").replace(b"BODY", b"U2FsdGVkX19hYWFhYWFhYQ=="), "PBKDF2"),
        ("armor-wrapping-entity-bomb", opnsense.encrypt_export(_laughs(), ENCRYPTION_KEY), "DOCTYPE"),
    ]


class Listener:
    """A TCP socket on loopback that counts the connections made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hostile.dtd"

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.sock.close()


IDS = [i for i, _, _ in inputs("/s", "http://x/")]


XML_DEFECTS: dict[str, str] = {}     # none known (depth, encoding fixed in checks/opnsense.py)


@pytest.mark.parametrize("name", with_known_defects(IDS, XML_DEFECTS))
def test_hostile_export_is_refused_cleanly(name: str, listener: Listener, hostile_secrets: Secrets):
    _, data, fragment = inputs(str(hostile_secrets.passphrase_file), listener.url)[IDS.index(name)]
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(opnsense.ExportError) as caught:      # anything else would crash the drill
            opnsense.read_export(data, ENCRYPTION_KEY)
    finally:
        seconds = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    message = str(caught.value)
    assert fragment.lower() in message.lower(), f"{name}: {message}"
    assert seconds < MAX_SECONDS, f"{name} took {seconds:.1f} s"
    assert peak < MAX_PEAK_BYTES + 4 * len(data), f"{name} peaked at {peak:,} bytes"
    assert len(message) < 1000 and "\n" not in message.strip(), message
    assert all(n.decode() not in message for n in hostile_secrets.needles()), message
    assert ENCRYPTION_KEY not in message
    assert listener.connections() == 0, f"{name} made a network connection"
