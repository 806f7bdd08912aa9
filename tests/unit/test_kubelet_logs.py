"""CRI log format parsing, tailing and following (kuberuntime/logs)."""
import asyncio

import pytest

from kubelet.logs import parse_cri_log, read_logs, render, tail_start

LINES = [
    b"2024-05-01T12:00:00.000000001Z stdout F hello\n",
    b"2024-05-01T12:00:01.000000001Z stderr P part one \n",
    b"2024-05-01T12:00:01.500000001Z stderr F and two\n",
    b"2024-05-01T12:00:02.000000001Z stdout F bye\n",
]


def test_parse_full_and_partial():
    rec = parse_cri_log(LINES[0])
    assert (rec.timestamp, rec.stream, rec.partial, rec.message) == \
        ("2024-05-01T12:00:00.000000001Z", "stdout", False, b"hello")
    assert parse_cri_log(LINES[1]).partial
    assert parse_cri_log(b"2024-05-01T12:00:00Z stdout F\n").message == b""


@pytest.mark.parametrize("bad", [b"garbage", b"ts stdxx F m", b"ts stdout X m"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_cri_log(bad)


def test_render_joins_partials_and_timestamps():
    out, at_start = render(LINES, timestamps=False)
    assert out == b"hello\npart one and two\nbye\n" and at_start
    out, _ = render(LINES, timestamps=True)
    assert out.splitlines()[1] == b"2024-05-01T12:00:01.000000001Z part one and two"


def test_tail_counts_full_lines():
    assert tail_start(LINES, 1) == 3
    assert tail_start(LINES, 2) == 1  # the partial chain counts as one line
    assert tail_start(LINES, 10) == 0
    assert tail_start(LINES, 0) == 4
    assert tail_start(LINES, None) == 0


async def collect(agen):
    return b"".join([c async for c in agen])


async def test_read_logs_tail(tmp_path):
    p = tmp_path / "0.log"
    p.write_bytes(b"".join(LINES))
    assert await collect(read_logs(str(p), tail=1)) == b"bye\n"
    assert await collect(read_logs(str(p))) == b"hello\npart one and two\nbye\n"


async def test_follow_streams_until_container_exits(tmp_path):
    """follow=true yields lines appended later, and ends once the container stopped and the file is drained."""
    p = tmp_path / "0.log"
    p.write_bytes(LINES[0])
    running = True

    async def still_running():
        return running

    async def writer():
        nonlocal running
        await asyncio.sleep(0.3)
        with open(p, "ab") as f:
            f.write(LINES[3])
        await asyncio.sleep(0.3)
        running = False
    w = asyncio.ensure_future(writer())
    out = await asyncio.wait_for(collect(read_logs(str(p), follow=True, still_running=still_running,
                                                   poll=0.05)), 10)
    await w
    assert out == b"hello\nbye\n"
