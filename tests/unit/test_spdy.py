"""kubeling/spdy.py: SPDY/3 frames as kubectl's spdystream writes and reads them."""
import struct

import pytest

from kubeling import spdy


def test_dictionary_is_spdy3s():
    """Its entries and tail as the spec lists them (kubectl interop in tests/e2e/test_exec.py)."""
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b",utf-,*,enq=0.")
    assert len(spdy.DICTIONARY) == 1423


def test_syn_stream_reply_data_ping_roundtrip():
    client, server = spdy.Session(), spdy.Session()
    wire = client.syn_stream_frame(1, {"streamType": "error", "port": "80", "requestID": "0"})
    wire += client.syn_stream_frame(3, {"streamtype": "data", "port": "80", "requestid": "0"})
    wire += b"".join(spdy.Session.data_frames(3, b"GET / HTTP/1.0\r\n\r\n", fin=True))
    wire += spdy.Session.ping_frame(7)
    frames = []
    for i in range(0, len(wire), 5):  # arbitrary message boundaries, as over the websocket
        frames += server.feed(wire[i:i + 5])
    assert [f.type for f in frames] == [spdy.SYN_STREAM, spdy.SYN_STREAM, 0, spdy.PING]
    assert frames[0].headers == {"streamtype": "error", "port": "80", "requestid": "0"}
    assert frames[1].stream_id == 3 and frames[1].headers["streamtype"] == "data"
    assert frames[2].data == b"GET / HTTP/1.0\r\n\r\n" and frames[2].fin and frames[2].stream_id == 3
    assert frames[3].ping_id == 7
    [reply] = client.feed(server.syn_reply_frame(3))
    assert reply.type == spdy.SYN_REPLY and reply.stream_id == 3 and reply.headers == {}
    [rst] = client.feed(spdy.Session.rst_stream_frame(3))
    assert (rst.type, rst.stream_id, rst.status) == (spdy.RST_STREAM, 3, spdy.RST_CANCEL)


def test_bad_input_is_a_protocol_error():
    with pytest.raises(spdy.ProtocolError, match="version"):
        spdy.Session().feed(struct.pack(">HHI", 0x8000 | 2, spdy.PING, 4) + b"\0\0\0\1")
    bad_block = struct.pack(">HHI", 0x8000 | 3, spdy.SYN_REPLY, 8) + b"\0\0\0\1" + b"junk"
    with pytest.raises(spdy.ProtocolError):
        spdy.Session().feed(bad_block)
