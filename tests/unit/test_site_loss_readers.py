"""The site-loss drill's readers: streaming reassembly of an index from chunk objects (each
distinct chunk once, decrypted, digest- and length-checked, zero runs left as holes), the
partition table and ext superblock read from image bytes (images made by the real mke2fs; the
MBR and GPT written as the UEFI spec lays them out), and debugfs run in the sandbox against real
ext4 images, including hostile ones."""
from __future__ import annotations

import os
import struct
import subprocess
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from restoredrill import sandbox
from restoredrill.checks import ext4_listing
from restoredrill.checks.disk_image import find_ext_filesystems, read_partition_table
from restoredrill.checks.ext4_listing import ListingError, PathResult, interpret, look_up, path_problem
from restoredrill.pbsformat import (CryptConfig, DatastoreReader, DatastoreWriter, FormatError, Layout,
                                    LocalSource, MissingChunk, encode_blob)
from restoredrill.pbsformat.reconstruct import decoder, fetch_sequential, plan_chunks, reassemble

TIME = datetime(2026, 11, 1, 2, 0, 3, tzinfo=timezone.utc)
CHUNK = 64 * 1024


# --- reassembly --------------------------------------------------------------------------

def write_store(root: Path, image: bytes, crypt: CryptConfig | None):
    writer = DatastoreWriter(root, precreate_chunk_dirs=False)
    ref = writer.write_snapshot(None, "vm", "110", TIME, {"drive-scsi0.img.fidx": image}, crypt=crypt,
                                chunk_size=CHUNK)
    reader = DatastoreReader(root)
    return reader, ref, reader.read_archive_index(ref, "drive-scsi0.img.fidx")


def rebuild(root: Path, index, crypt, out: Path, encrypted_index: bool = True):
    layout = Layout.local()
    plan = plan_chunks("drive-scsi0.img.fidx", index)
    process = decoder(layout, plan, crypt, encrypted_index=encrypted_index)
    keys = [layout.chunk_key(d) for d in plan.ranges]
    with open(out, "w+b") as handle:
        return plan, reassemble(plan, layout, fetch_sequential(LocalSource(root), keys, process), handle)


def test_reassembly_fetches_each_chunk_once_and_leaves_zero_runs_as_holes(tmp_path):
    crypt = CryptConfig.generate()
    first = os.urandom(CHUNK)
    image = first + bytes(3 * CHUNK) + first + os.urandom(CHUNK // 3)        # repeats, zeros, short tail
    _reader, _ref, index = write_store(tmp_path / "store", image, crypt)
    plan, done = rebuild(tmp_path / "store", index, crypt, tmp_path / "out.img")
    assert (tmp_path / "out.img").read_bytes() == image
    assert (plan.entries, plan.unique, done.unique_chunks, done.encrypted_chunks) == (6, 3, 3, 3)
    assert done.zero_chunks == 1 and done.written_bytes == 2 * CHUNK + CHUNK // 3
    assert done.stored_bytes <= plan.stored_upper_bound()


def test_a_missing_damaged_or_plain_chunk_fails_naming_its_object(tmp_path):
    crypt = CryptConfig.generate()
    image = os.urandom(2 * CHUNK)
    _reader, _ref, index = write_store(tmp_path / "store", image, crypt)
    victim = index.digests[1]
    key = Layout.local().chunk_key(victim)
    path = tmp_path / "store" / key
    original = path.read_bytes()
    path.unlink()
    with pytest.raises(MissingChunk, match=key):
        rebuild(tmp_path / "store", index, crypt, tmp_path / "out.img")
    damaged = bytearray(original)
    damaged[-1] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(FormatError, match=f"chunk {key}"):
        rebuild(tmp_path / "store", index, crypt, tmp_path / "out.img")
    plain = image[CHUNK:]
    path.write_bytes(encode_blob(plain, compress=True))       # the provider could read this one
    with pytest.raises(FormatError, match=f"chunk {key}: stored unencrypted, but its index is encrypted"):
        rebuild(tmp_path / "store", index, crypt, tmp_path / "out.img")
    path.write_bytes(original)                      # and encrypted chunks where the index says plain
    with pytest.raises(FormatError, match=r"chunk \.chunks/[0-9a-f]{4}/[0-9a-f]{64}: stored encrypted, but its "
                                          r"index is not"):
        rebuild(tmp_path / "store", index, None, tmp_path / "out.img", encrypted_index=False)
    path.write_bytes(original)
    with pytest.raises(FormatError, match="decrypt|wrong key|tag"):     # another key cannot open it
        rebuild(tmp_path / "store", index, CryptConfig.generate(), tmp_path / "out.img")


# --- partition tables and superblocks -------------------------------------------------------

def mkfs(path: Path, size: str = "8M", source: Path | None = None) -> bytes:
    argv = ["mke2fs", "-q", "-F", "-t", "ext4"] + (["-d", str(source)] if source else []) + [str(path), size]
    subprocess.run(argv, check=True, capture_output=True)
    return path.read_bytes()


def reader(data: bytes):
    return lambda offset, length: data[offset:offset + length]


def mbr(entries: list[tuple[int, int, int]]) -> bytes:
    sector = bytearray(512)
    for i, (kind, first, count) in enumerate(entries):
        struct.pack_into("<B3sB3sII", sector, 446 + 16 * i, 0, b"\0\0\0", kind, b"\0\0\0", first, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def gpt_disk(fs: bytes, first_lba: int = 2048) -> bytes:
    """A protective MBR, a GPT header at LBA 1 and 128 entries at LBA 2, one Linux partition."""
    total = first_lba + len(fs) // 512 + 34
    entry = bytearray(128)
    entry[:16] = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4").bytes_le
    entry[16:32] = uuid.uuid4().bytes_le
    struct.pack_into("<QQ", entry, 32, first_lba, first_lba + len(fs) // 512 - 1)
    array = bytes(entry) + bytes(127 * 128)
    header = bytearray(92)
    header[:8] = b"EFI PART"
    struct.pack_into("<IIIIQQQQ16sQIII", header, 8, 0x00010000, 92, 0, 0, 1, total - 1, 34, total - 34,
                     uuid.uuid4().bytes_le, 2, 128, 128, zlib.crc32(array))
    struct.pack_into("<I", header, 16, zlib.crc32(bytes(header)))
    disk = bytearray(total * 512)
    disk[:512] = mbr([(0xEE, 1, total - 1)])
    disk[512:604] = header
    disk[1024:1024 + len(array)] = array
    disk[first_lba * 512:first_lba * 512 + len(fs)] = fs
    return bytes(disk)


def test_a_bare_ext4_image_has_no_table_and_one_filesystem(tmp_path):
    data = mkfs(tmp_path / "bare.img")
    table = read_partition_table(reader(data), len(data))
    assert table.kind == "none"
    found, problems = find_ext_filesystems(reader(data), table, len(data))
    assert problems == [] and [(f.where, f.offset, f.size, f.flavour) for f in found] == [
        ("whole disk", 0, len(data), "ext4")]


def test_mbr_and_gpt_tables_and_the_filesystem_in_a_partition(tmp_path):
    fs = mkfs(tmp_path / "fs.img")
    disk = bytearray(mbr([(0x83, 2048, len(fs) // 512)]) + bytes(2048 * 512 - 512) + fs)
    table = read_partition_table(reader(bytes(disk)), len(disk))
    assert table.kind == "mbr" and [(p.number, p.start, p.type) for p in table.partitions] == [(1, 1 << 20, "0x83")]
    found, _ = find_ext_filesystems(reader(bytes(disk)), table, len(disk))
    assert [(f.where, f.offset) for f in found] == [("partition 1", 1 << 20)]
    gpt = gpt_disk(fs)
    table = read_partition_table(reader(gpt), len(gpt))
    assert table.kind == "gpt" and table.problems == []
    assert [(p.start, p.size, p.type) for p in table.partitions] == [
        (1 << 20, len(fs), "0FC63DAF-8483-4772-8E79-3D69D8477DE4")]
    found, _ = find_ext_filesystems(reader(gpt), table, len(gpt))
    assert [f.flavour for f in found] == ["ext4"]


def test_truncated_images_and_broken_tables_are_named(tmp_path):
    fs = mkfs(tmp_path / "fs.img")
    short = fs[:len(fs) // 2]
    table = read_partition_table(reader(short), len(short))
    found, problems = find_ext_filesystems(reader(short), table, len(short))
    assert found == [] and "truncated image" in problems[0]
    disk = mbr([(0x83, 2048, 1 << 30)]) + bytes(4096)
    assert "past the end" in read_partition_table(reader(disk), len(disk)).problems[0]
    no_header = mbr([(0xEE, 1, 100)]) + bytes(4096)
    assert "no GPT header" in read_partition_table(reader(no_header), len(no_header)).problems[0]
    huge = bytearray(gpt_disk(fs))
    struct.pack_into("<I", huge, 512 + 80, 1 << 30)                  # 2**30 partition entries
    assert "not a table" in read_partition_table(reader(bytes(huge)), len(huge)).problems[0]


# --- debugfs in the sandbox ---------------------------------------------------------------

def test_debugfs_output_is_read_only_for_its_head_and_the_not_found_message():
    assert interpret("/a", "Inode: 14   Type: regular    Mode:  0644   Flags: 0x80000\n...", "") == \
        PathResult("/a", True, "regular")
    assert interpret("/a", "", "debugfs 1.47.0\n/a: File not found by ext2_lookup \n") == PathResult("/a", False)
    with pytest.raises(ListingError):
        interpret("/a", "", "debugfs: Bad magic number in super-block while trying to open img\n")
    with pytest.raises(ListingError):                  # a head somewhere else is not the answer
        interpret("/a", "junk\nInode: 14   Type: regular    Mode:  0644\n", "")
    assert path_problem("relative") and path_problem('/a"b') and path_problem("/a\nb") and path_problem("/a\\b")
    assert path_problem("/srv/app/canary.txt") is None and path_problem("/with space") is None


def test_debugfs_finds_and_misses_paths_in_a_real_image_in_the_sandbox(tmp_path):
    root = tmp_path / "root"
    (root / "srv" / "app").mkdir(parents=True)
    (root / "srv" / "app" / "canary.txt").write_text("Inode: 99   Type: regular    Mode:  0644\n")
    (root / "srv" / "with space").write_text("x")
    os.symlink("/etc/shadow", root / "srv" / "link")
    hostile = "\x1b]0;pwned\x07\nInode: 1   Type: regular    Mode:  0644"
    (root / "srv" / hostile).write_text("x")
    image = sandbox.private_dir(tmp_path, "work-") / "disk.img"      # where the drill puts it
    mkfs(image, source=root)
    sandbox.give_to_sandbox(image)
    found = look_up(image, 0, ["/srv/app/canary.txt", "/srv/with space", "/srv/link", "/srv/gone",
                               "/srv/app/canary.txt/x", 'bad"path'])
    assert [(r.path, r.found, r.kind) for r in found[:5]] == [
        ("/srv/app/canary.txt", True, "regular"), ("/srv/with space", True, "regular"),
        ("/srv/link", True, "symlink"), ("/srv/gone", False, ""), ("/srv/app/canary.txt/x", False, "")]
    assert not found[5].found and "not looked up" in found[5].note
    # the same filesystem inside a GPT partition: debugfs reads it at the partition's offset
    disk = image.with_name("gpt.img")
    disk.write_bytes(gpt_disk(image.read_bytes()))
    sandbox.give_to_sandbox(disk)
    table = read_partition_table(reader(disk.read_bytes()), disk.stat().st_size)
    [fs], _ = find_ext_filesystems(reader(disk.read_bytes()), table, disk.stat().st_size)
    assert [r.found for r in look_up(disk, fs.offset, ["/srv/app/canary.txt", "/srv/gone"])] == [True, False]


def test_debugfs_refuses_a_damaged_filesystem_without_showing_its_output(tmp_path):
    image = sandbox.private_dir(tmp_path, "work-") / "disk.img"
    data = bytearray(mkfs(image))
    data[1024 + 0x38:1024 + 0x3A] = b"\0\0"                    # superblock magic gone
    image.write_bytes(bytes(data))
    sandbox.give_to_sandbox(image)
    with pytest.raises(ListingError, match="could not read the filesystem|root directory"):
        look_up(image, 0, ["/x"])


def test_debugfs_runs_in_catastrophic_read_only_mode():
    argv = ext4_listing.debugfs_argv(Path("/w/disk.img"), 1 << 20, "/srv/a b")
    assert argv == ["/usr/sbin/debugfs", "-c", "-R", 'stat "/srv/a b"', "/w/disk.img?offset=1048576"]
    assert "-w" not in argv
