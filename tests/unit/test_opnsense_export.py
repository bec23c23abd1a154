"""OPNsense exports: parsing (and what is refused), the armored encryption format both ways,
interoperability with the openssl command line, choosing the newest export."""
from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from restoredrill.checks.opnsense import (ExportError, ExportFile, WrongPassphrase, choose_kdf,
                                          compare_with_live, decrypt_export, encrypt_export,
                                          is_encrypted_export, newest_good, order_exports, parse_armor,
                                          parse_config, read_export)
from restoredrill.lab.offsite import render_opnsense_config

WHEN = datetime(2026, 5, 1, 2, 0, 3, tzinfo=timezone.utc)
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def config() -> bytes:
    return render_opnsense_config(WHEN, extra_rules=2)


def test_a_complete_config_parses_with_its_facts(config):
    parsed = parse_config(config)
    assert parsed.hostname == "fw1" and parsed.fqdn == "fw1.lab.internal"
    assert parsed.interfaces == ("wan", "lan", "opt1")
    assert (parsed.legacy_rules, parsed.mvc_rules, parsed.filter_rules) == (2, 4, 6)
    assert parsed.release == "unknown" and parsed.config_format is None
    assert parsed.revision_time == WHEN
    assert parsed.facts()["revision_time"] == WHEN.isoformat()


@pytest.mark.parametrize("document, reason", [
    (b'<?xml version="1.0"?>\n<!DOCTYPE opnsense [<!ENTITY a "aaaa">]>\n<opnsense>&a;</opnsense>', "DOCTYPE"),
    (b'<?xml version="1.0"?>\n<!DOCTYPE opnsense SYSTEM "http://example.invalid/x.dtd">\n<opnsense/>', "DOCTYPE"),
    (b'<?xml version="1.0"?>\n<pfsense><version>22.0</version></pfsense>', "pfSense"),
    (b"<!DOCTYPE html>\n<html><body>Login</body></html>", "HTML page"),
    (b"<html><head><title>502 Bad Gateway</title></head></html>", "HTML page"),
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not well-formed"),
    (b"just some text\n", "not well-formed"),
    (b'<?xml version="1.0"?>\n<config><version>1</version></config>', "expected <opnsense>"),
    (b"<opnsense><system/><interfaces><lan/></interfaces><filter><rule/></filter></opnsense>",
     "no <system/hostname>"),
    (b"<opnsense><system><hostname> </hostname></system><interfaces><lan/></interfaces></opnsense>",
     "empty <system/hostname>"),
    (b"<opnsense><system><hostname>fw</hostname></system><interfaces/><filter><rule/></filter></opnsense>",
     "no interface"),
    (b"<opnsense><system><hostname>fw</hostname></system><filter><rule/></filter></opnsense>",
     "no <interfaces>"),
    (b"<PFSENSE><system><hostname>fw</hostname></system><interfaces><lan/></interfaces></PFSENSE>", "pfSense"),
])
def test_what_is_not_an_opnsense_config_is_refused(document, reason):
    with pytest.raises(ExportError, match=reason):
        parse_config(document)


def test_a_truncated_export_says_truncated(config):
    with pytest.raises(ExportError, match="truncated"):
        parse_config(config[: len(config) // 2])


def test_the_billion_laughs_is_refused_before_expansion():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                       for i in range(1, 10))
            + b']><opnsense>&lol9;</opnsense>')
    with pytest.raises(ExportError, match="DOCTYPE or entity"):
        parse_config(bomb)


@pytest.mark.parametrize("kdf", ["pbkdf2-sha512", "md5"])
def test_encrypted_exports_round_trip(config, kdf):
    armored = encrypt_export(config, PASSPHRASE, kdf=kdf)
    assert is_encrypted_export(armored)
    assert decrypt_export(armored, PASSPHRASE) == config
    parsed, how = read_export(armored, PASSPHRASE)
    assert parsed.revision_time == WHEN
    assert how == ("AES-256-CBC, md5 (old format)" if kdf == "md5" else
                   "AES-256-CBC, pbkdf2-sha512, 100000 iterations")
    assert read_export(config, None) == (parse_config(config), None)


def test_the_armor_is_exactly_opnsenses_format(config):
    text = encrypt_export(config, PASSPHRASE, version="25.7.10").decode()
    lines = text.split("\n")
    assert lines[:6] == ["---- BEGIN config.xml ----", "Version: OPNsense 25.7.10", "Cipher: AES-256-CBC",
                         "PBKDF2: 100000", "Hash: SHA512", ""]
    body = lines[6:-2]
    assert all(len(line) == 76 for line in body[:-1]) and 0 < len(body[-1]) <= 76
    assert lines[-2:] == ["---- END config.xml ----", ""]
    assert base64.b64decode("".join(body)).startswith(b"Salted__")
    old = encrypt_export(config, PASSPHRASE, kdf="md5").decode().split("\n")
    assert old[1:5] == ["Version: OPNsense 25.7.10", "Cipher: AES-256-CBC", "Hash: MD5", ""]


def test_the_kdf_is_chosen_from_the_header_lines():
    assert choose_kdf({"Cipher": "AES-256-CBC", "PBKDF2": "100000", "Hash": "SHA512"}) == ("pbkdf2-sha512", 100000)
    assert choose_kdf({"Cipher": "AES-256-CBC", "Hash": "MD5"}) == ("md5", 1)
    assert choose_kdf({"Cipher": "AES-256-CBC"}) == ("md5", 1)
    for bad in ({"Cipher": "AES-128-CBC", "Hash": "MD5"}, {"Hash": "SHA512"},
                {"PBKDF2": "lots", "Hash": "SHA512"}, {"PBKDF2": "0", "Hash": "SHA512"}):
        with pytest.raises(ExportError):
            choose_kdf(bad)


def test_a_custom_iteration_count_in_the_header_is_honoured(config):
    armored = encrypt_export(config, PASSPHRASE, iterations=1234)
    assert b"PBKDF2: 1234\n" in armored
    assert decrypt_export(armored, PASSPHRASE) == config


def test_a_wrong_passphrase_says_so_and_never_shows_it(config):
    armored = encrypt_export(config, PASSPHRASE, iterations=1000)
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as caught:
        decrypt_export(armored, "not the passphrase")
    assert PASSPHRASE not in str(caught.value) and "not the passphrase" not in str(caught.value)


def test_an_encrypted_export_without_a_passphrase_reference_is_explained(config):
    with pytest.raises(ExportError, match="no passphrase reference"):
        read_export(encrypt_export(config, PASSPHRASE, iterations=1000), None)


@pytest.mark.parametrize("damage, message", [
    (lambda t: t.replace(b"---- END config.xml ----\n", b""), "truncated"),
    (lambda t: t[: len(t) // 2], "truncated"),
    (lambda t: t.replace(b"Salted__"[:0] + b"\n\n", b"\n\n!!!!", 1), "base64"),
    (lambda t: b"---- BEGIN config.xml ----\nCipher: AES-256-CBC\n\n"
               + base64.b64encode(b"NotSalt_" + b"x" * 40) + b"\n---- END config.xml ----\n", "Salted__"),
])
def test_damaged_armor_is_refused(config, damage, message):
    armored = encrypt_export(config, PASSPHRASE, iterations=1000)
    with pytest.raises(ExportError, match=message):
        decrypt_export(damage(armored), PASSPHRASE)


def test_parse_armor_reads_tag_headers_and_payload(config):
    armor = parse_armor(encrypt_export(config, PASSPHRASE, iterations=1000, tag="captiveportal.xml"))
    assert armor.tag == "captiveportal.xml" and armor.headers["PBKDF2"] == "1000"


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("the openssl command line tool is missing (apt-get install openssl)", pytrace=False)
    return path


@pytest.mark.parametrize("kdf, flags", [("pbkdf2-sha512", ["-md", "sha512", "-pbkdf2", "-iter", "100000"]),
                                        ("md5", ["-md", "md5"])])
def test_openssl_decrypts_what_we_write_and_we_decrypt_what_openssl_writes(tmp_path, openssl, config,
                                                                           kdf, flags):
    ours = parse_armor(encrypt_export(config, PASSPHRASE, kdf=kdf)).payload
    (tmp_path / "ours.enc").write_bytes(ours)
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE)
    out = subprocess.run([openssl, "enc", "-d", "-aes-256-cbc", *flags, "-in", tmp_path / "ours.enc",
                          "-pass", f"file:{pass_file}"], capture_output=True, check=True)
    assert out.stdout == config
    (tmp_path / "plain.xml").write_bytes(config)
    subprocess.run([openssl, "enc", "-e", "-aes-256-cbc", *flags, "-in", tmp_path / "plain.xml", "-out",
                    tmp_path / "theirs.enc", "-pass", f"file:{pass_file}"], capture_output=True, check=True)
    encoded = base64.b64encode((tmp_path / "theirs.enc").read_bytes()).decode()
    headers = "Hash: MD5\n" if kdf == "md5" else "PBKDF2: 100000\nHash: SHA512\n"
    armored = ("---- BEGIN config.xml ----\nVersion: OPNsense 25.7.10\nCipher: AES-256-CBC\n" + headers + "\n"
               + "".join(encoded[i:i + 76] + "\n" for i in range(0, len(encoded), 76))
               + "---- END config.xml ----\n").encode()
    assert decrypt_export(armored, PASSPHRASE) == config


@settings(max_examples=40, deadline=None)
@given(plain=st.binary(max_size=300).map(lambda b: b"<x>" + b + b"</x>"),
       passphrase=st.text(min_size=1, max_size=40), kdf=st.sampled_from(["pbkdf2-sha512", "md5"]))
def test_round_trip_for_any_plaintext_and_passphrase(plain, passphrase, kdf):
    armored = encrypt_export(plain, passphrase, kdf=kdf, iterations=10)
    assert decrypt_export(armored, passphrase) == plain


def export(path, mtime, revision=None, error=None) -> ExportFile:
    entry = ExportFile(path, mtime, 100, error=error)
    if revision is not None:
        entry.config = parse_config(render_opnsense_config(revision))
    return entry


def test_exports_are_ordered_by_revision_time_not_mtime():
    now = datetime(2026, 5, 10, tzinfo=timezone.utc)
    touched_old = export("old.xml", now, revision=now - timedelta(days=9))
    newest = export("new.xml", now - timedelta(hours=5), revision=now - timedelta(hours=5))
    broken = export("broken.xml", now - timedelta(hours=1), error="truncated")
    assert [e.path for e in order_exports([touched_old, newest, broken])] == ["new.xml", "old.xml", "broken.xml"]
    assert newest_good([touched_old, broken, newest]) is newest
    assert newest_good([broken]) is None


def test_a_live_revision_newer_than_the_newest_export_means_stale():
    exported = parse_config(render_opnsense_config(WHEN))
    live = parse_config(render_opnsense_config(WHEN + timedelta(hours=3), description="rule added"))
    problems = compare_with_live(exported, live)
    assert len(problems) == 1 and "rule added" in problems[0] and "stale" in problems[0]
    assert compare_with_live(live, exported) == []
    other = parse_config(render_opnsense_config(WHEN, hostname="fw2"))
    assert "fw2.lab.internal" in compare_with_live(exported, other)[0]


# --- real exports: no <version>, rules in the MVC section ------------------------------------------

# Built the way opnsense/core writes its factory default (src/etc/config.xml.sample, 2017 on):
# no top-level <version>, an empty legacy <filter>, the default rules under
# <OPNsense><Firewall><Filter><rules>, no <revision> yet.
FACTORY_SHAPE = b"""<?xml version="1.0"?>
<opnsense>
  <trigger_initial_wizard/>
  <theme>opnsense</theme>
  <system><optimization>normal</optimization><hostname>OPNsense</hostname><domain>internal</domain>
    <timezone>Etc/UTC</timezone><webgui><protocol>https</protocol></webgui></system>
  <interfaces>
    <wan><enable>1</enable><if>mismatch1</if><ipaddr>dhcp</ipaddr><ipaddrv6>dhcp6</ipaddrv6></wan>
    <lan><enable>1</enable><if>mismatch0</if><ipaddr>192.168.1.1</ipaddr><subnet>24</subnet></lan>
  </interfaces>
  <nat><outbound><mode>automatic</mode></outbound></nat>
  <filter>
  </filter>
  <OPNsense><Firewall><Filter><rules>
    <rule><enabled>1</enabled><sequence>1</sequence><action>pass</action><interface>lan</interface>
      <ipprotocol>inet</ipprotocol><source_net>lan</source_net><description>Default allow LAN to any rule</description></rule>
    <rule><enabled>1</enabled><sequence>11</sequence><action>pass</action><interface>lan</interface>
      <ipprotocol>inet6</ipprotocol><source_net>lan</source_net><description>Default allow LAN IPv6 to any rule</description></rule>
  </rules></Filter></Firewall></OPNsense>
</opnsense>
"""


def test_a_factory_default_shaped_config_parses_without_version_and_legacy_rules():
    parsed = parse_config(FACTORY_SHAPE)
    assert parsed.fqdn == "OPNsense.internal" and parsed.interfaces == ("wan", "lan")
    assert (parsed.legacy_rules, parsed.mvc_rules) == (0, 2)
    assert parsed.release == "unknown" and parsed.revision_time is None
    assert parsed.facts()["opnsense_release"] == "unknown"


def test_an_old_installs_version_element_is_a_config_format_never_the_release():
    old = FACTORY_SHAPE.replace(b"<theme>", b"<version>11.2</version><theme>", 1)
    parsed = parse_config(old)
    assert parsed.release == "unknown" and parsed.config_format == "11.2"
    assert parsed.facts()["config_format"] == "11.2"
    odd = parse_config(FACTORY_SHAPE.replace(b"<theme>", b"<version>$(reboot)</version><theme>", 1))
    assert odd.config_format is None


def test_the_release_comes_from_the_encrypted_header():
    armored = encrypt_export(FACTORY_SHAPE, PASSPHRASE, iterations=1000, version="25.7.10")
    parsed, _how = read_export(armored, PASSPHRASE)
    assert parsed.release == "25.7.10"
    hostile = armored.replace(b"Version: OPNsense 25.7.10", b"Version: OPNsense 25.7\x1b[2J<b>", 1)
    assert read_export(hostile, PASSPHRASE)[0].release == "unknown"
    missing = armored.replace(b"Version: OPNsense 25.7.10\n", b"", 1)
    assert read_export(missing, PASSPHRASE)[0].release == "unknown"


def test_a_pfsense_header_is_refused_by_name():
    armored = encrypt_export(FACTORY_SHAPE, PASSPHRASE, iterations=1000).replace(
        b"Version: OPNsense 25.7.10", b"Version: pfSense 2.7.2", 1)
    with pytest.raises(ExportError, match="pfSense configuration, not OPNsense"):
        read_export(armored, PASSPHRASE)


def _upstream_sample() -> bytes | None:
    """opnsense/core's own src/etc/config.xml.sample, where a clone of opnsense/core is at hand
    (RESTOREDRILL_OPNSENSE_CORE: a work tree or a bare git directory); the shape test above
    runs everywhere."""
    import os
    location = os.environ.get("RESTOREDRILL_OPNSENSE_CORE", "/work/.mirror/opnsense+core/repo")
    path = os.path.join(location, "src/etc/config.xml.sample")
    if os.path.isfile(path):
        with open(path, "rb") as handle:
            return handle.read()
    if os.path.isdir(location) and shutil.which("git"):
        shown = subprocess.run(["git", "--git-dir", location, "show", "HEAD:src/etc/config.xml.sample"],
                               capture_output=True, check=False)
        return shown.stdout if shown.returncode == 0 else None
    return None


UPSTREAM_SAMPLE = _upstream_sample()


@pytest.mark.parametrize("sample", [UPSTREAM_SAMPLE] if UPSTREAM_SAMPLE else [])
def test_opnsense_cores_own_sample_parses(sample):
    parsed = parse_config(sample)
    assert parsed.hostname == "OPNsense" and {"wan", "lan"} <= set(parsed.interfaces)
    assert parsed.legacy_rules == 0 and parsed.mvc_rules >= 1 and parsed.release == "unknown"
