"""Bounds on a plain OPNsense export (depth, element count, size, encoding) and refusals that
quote none of the file: what a hostile or damaged file on the storage box meets."""
from __future__ import annotations

import pytest

from restoredrill.checks import opnsense
from restoredrill.checks.opnsense import (
    ExportError,
    choose_kdf,
    parse_armor,
    parse_config,
)

BODY = ("<system><hostname>fw</hostname></system>"
        "<interfaces><lan/></interfaces><filter><rule/></filter>")


def nested(levels: int) -> bytes:
    """A valid config whose deepest element sits ``levels`` deep (the root is level 1)."""
    inner = levels - 1
    return f"<opnsense>{BODY}{'<a>' * inner}{'</a>' * inner}</opnsense>".encode()


def test_depth_up_to_the_limit_parses_and_one_more_is_refused():
    assert parse_config(nested(opnsense.MAX_XML_DEPTH)).hostname == "fw"
    with pytest.raises(ExportError, match=f"nests more than {opnsense.MAX_XML_DEPTH} elements deep"):
        parse_config(nested(opnsense.MAX_XML_DEPTH + 1))


def test_too_many_elements_are_refused_while_parsing(monkeypatch):
    monkeypatch.setattr(opnsense, "MAX_XML_ELEMENTS", 40)
    assert parse_config(f"<opnsense>{BODY}{'<x/>' * 20}</opnsense>".encode()).filter_rules == 1
    with pytest.raises(ExportError, match="more than 40 elements"):
        parse_config(f"<opnsense>{BODY}{'<x/>' * 40}</opnsense>".encode())


def test_an_oversized_file_is_refused_before_parsing(monkeypatch):
    monkeypatch.setattr(opnsense, "MAX_EXPORT_BYTES", 200)
    with pytest.raises(ExportError, match="more than the 200-byte limit"):
        parse_config(f"<opnsense>{BODY}<pad>{'x' * 200}</pad></opnsense>".encode())


@pytest.mark.parametrize("encoding", ["x-hostile-7", "UTF-7", "utf-32"])
def test_an_encoding_expat_cannot_read_is_an_export_error_naming_no_content(encoding):
    document = f'<?xml version="1.0" encoding="{encoding}"?><opnsense>{BODY}</opnsense>'.encode()
    with pytest.raises(ExportError, match="encoding") as caught:
        parse_config(document)
    assert encoding.lower() not in str(caught.value).lower()


def test_a_single_byte_encoding_still_parses():
    document = f'<?xml version="1.0" encoding="ISO-8859-1"?><opnsense>{BODY}</opnsense>'
    assert parse_config(document.replace(">fw<", ">f\u00e9<").encode("latin-1")).hostname == "f\u00e9"


def test_a_long_root_tag_is_not_quoted():
    tag = "HOSTILE" * 40
    with pytest.raises(ExportError, match="expected <opnsense>") as caught:
        parse_config(f"<{tag}/>".encode())
    assert "HOSTILE" not in str(caught.value)


def test_a_long_armor_header_is_not_quoted():
    armor = parse_armor(b"---- BEGIN config.xml ----\nCipher: " + b"Z" * 500 + b"\n\nAAAA\n---- END config.xml ----\n")
    with pytest.raises(ExportError, match="a 500-character value") as caught:
        choose_kdf(armor.headers)
    assert "ZZZZ" not in str(caught.value)
