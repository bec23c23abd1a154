"""Hostile archives and disk images through the site-loss drill's look inside
(fixtures/site_loss_inside.py): whoever controls a guest controls its files, whoever controls
the bucket every byte. Each must FAIL the case with one paragraph naming the archive, with
nothing of the hostile content (escape sequences, line breaks) in the message, never another
exception; a split archive half alone is named."""
from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from restoredrill import sandbox
from restoredrill.checks.errors import CheckFailed
from restoredrill.lab.pxarwrite import Node, encode, tree_of_files
from restoredrill.fixtures.site_loss_inside import Inspector

HOSTILE = b"\x1b]0;pwned\x07\nFAKE LINE"


def guest(*paths: str):
    return SimpleNamespace(name="g", health=[SimpleNamespace(kind="file", target=p, database=None) for p in paths])


def result():
    return SimpleNamespace(inside={}, found=[], missing=[])


def clean(message: str) -> str:
    assert "\x1b" not in message and "\x07" not in message and "FAKE LINE\n" not in message
    return message


@pytest.mark.parametrize("name", [b"..", b"a/b", HOSTILE + b"/x"])
def test_a_pxar_archive_with_a_hostile_name_fails_naming_the_archive(tmp_path, name):
    meta, _ = encode(Node("dir", children={name: Node("file", data=b"x")}), unchecked=True)
    (tmp_path / "a.img").write_bytes(meta)
    with pytest.raises(CheckFailed) as caught:
        Inspector(guest(), "guest g")("root.pxar.didx", tmp_path / "a.img", result())
    assert "root.pxar.didx" in clean(str(caught.value))


def test_a_file_named_like_a_wanted_path_in_another_place_is_not_found(tmp_path):
    meta, _ = encode(tree_of_files({"srv/app/x/canary.txt": b"x", HOSTILE.decode(): b"y"}, 0))
    (tmp_path / "a.img").write_bytes(meta)
    inspector, found = Inspector(guest("/srv/app/canary.txt"), "guest g"), result()
    inspector("root.pxar.didx", tmp_path / "a.img", found)
    with pytest.raises(CheckFailed) as caught:
        inspector.finish(found)
    assert "missing: /srv/app/canary.txt" in clean(str(caught.value))


def test_half_a_split_archive_is_named(tmp_path):
    meta, _payload = encode(tree_of_files({"a": b"x"}, 0), split=True)
    (tmp_path / "m.img").write_bytes(meta)
    inspector = Inspector(guest(), "guest g")
    assert inspector("root.mpxar.didx", tmp_path / "m.img", result()) is True      # kept for its partner
    with pytest.raises(CheckFailed, match="root.mpxar.didx without its other half"):
        inspector.finish(result())


def test_a_disk_whose_filesystem_is_damaged_fails_without_its_output(tmp_path):
    image = sandbox.private_dir(tmp_path, "work-") / "disk.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", str(image), "4M"], check=True, capture_output=True)
    data = bytearray(image.read_bytes())
    data[1024 + 0x28:1024 + 0x2C] = b"\xff\xff\xff\xff"        # s_inodes_per_group: nonsense
    image.write_bytes(bytes(data))
    sandbox.give_to_sandbox(image)
    with pytest.raises(CheckFailed) as caught:
        Inspector(guest("/etc/hostname"), "guest g")("drive-scsi0.img.fidx", image, result())
    assert "drive-scsi0.img.fidx" in clean(str(caught.value))
