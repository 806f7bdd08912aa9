"""etcdlite's WAL: records survive reopen, a torn tail is cut, damage before the end is fatal."""
import asyncio
import os

import pytest

from etcdlite.wal import WAL, Entry, HardState, WALCorruptError


def make(tmp_path, n=5):
    d = tmp_path / "wal"
    wal = WAL.create(d, b'{"name": "m"}')
    wal.save_sync([Entry(1, i, b"data-%d" % i) for i in range(1, n + 1)], HardState(1, 9, n))
    wal.close()
    return d, next(d.glob("*.wal"))


def test_reopen_returns_everything(tmp_path):
    d, _ = make(tmp_path)
    wal, got = WAL.open(d)
    assert got.metadata == b'{"name": "m"}'
    assert [e.index for e in got.entries] == [1, 2, 3, 4, 5]
    assert got.entries[2].data == b"data-3"
    assert got.hard_state == HardState(1, 9, 5)
    asyncio.run(wal.save([Entry(2, 6, b"six")]))
    wal.close()
    _, again = WAL.open(d)
    assert [e.index for e in again.entries][-1] == 6


@pytest.mark.parametrize("damage", [
    pytest.param(lambda b: b[:-3], id="record-cut-short"),
    pytest.param(lambda b: b + b"\x05\x00", id="partial-header"),
    pytest.param(lambda b: b + b"\x00" * 4096, id="zero-fill"),
    pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), id="bad-crc-on-last-record"),
])
def test_torn_tail_is_truncated(tmp_path, damage):
    """Bytes of an unacknowledged write at the end are dropped and the file is cut."""
    d, seg = make(tmp_path)
    seg.write_bytes(damage(seg.read_bytes()))
    wal, got = WAL.open(d)
    wal.close()
    assert got.repaired > 0
    assert got.entries[-1].index in (4, 5)
    _, clean = WAL.open(d)
    assert clean.repaired == 0


def test_corrupt_middle_record_refuses(tmp_path):
    d, seg = make(tmp_path)
    data = bytearray(seg.read_bytes())
    data[40] ^= 0xFF  # inside an early record
    seg.write_bytes(bytes(data))
    with pytest.raises(WALCorruptError, match="corrupt at offset"):
        WAL.open(d)
    assert os.path.getsize(seg) == len(data), "a corrupt WAL is never modified"
