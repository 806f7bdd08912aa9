"""SPDY/3.1 framing, the subset Kubernetes' httpstream speaks (kubectl port-forward).

kubectl 1.32 runs ``port-forward`` as SPDY/3.1 streams tunnelled through a
websocket (subprotocol ``SPDY/3.1+portforward.k8s.io``; client-go's
spdystream over wsstream's TunnelingConnection): the websocket's binary
messages carry the SPDY byte stream at arbitrary boundaries. This module
parses and builds the frames that traffic uses (draft-mbelshe-httpbis-spdy-00,
SPDY/3): control frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING,
GOAWAY, HEADERS, WINDOW_UPDATE, and data frames. Header blocks are
zlib-compressed, one stream per direction per session, with the SPDY/3
dictionary. Flow control (WINDOW_UPDATE) is accepted and ignored, as
spdystream does. Errors in the byte stream raise ProtocolError.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_INVALID_STREAM, RST_CANCEL = 1, 2, 5
MAX_FRAME_LENGTH = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20  # bytes of an inflated header block we accept

# The SPDY/3 header compression dictionary (spec section 2.6.10.1): length-prefixed
# names and values, then a run of status lines, dates and media types.
_WORDS = ("options head post put delete trace accept accept-charset accept-encoding accept-language "
          "accept-ranges age allow authorization cache-control connection content-base content-encoding "
          "content-language content-length content-location content-md5 content-range content-type date etag "
          "expect expires from host if-match if-modified-since if-none-match if-range if-unmodified-since "
          "last-modified location max-forwards pragma proxy-authenticate proxy-authorization range referer "
          "retry-after server te trailer transfer-encoding upgrade user-agent vary via warning "
          "www-authenticate method get status").split() + ["200 OK", "version", "HTTP/1.1", "url", "public",
                                                            "set-cookie", "keep-alive", "origin"]
_TAIL = ("100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
         "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
         "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
         "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
         "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
         "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,"
         "deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class ProtocolError(Exception):
    """The peer sent bytes that are not SPDY/3 (bad version, truncated header block ...)."""


@dataclasses.dataclass
class Frame:
    """One frame. Control frames have ``type`` (SYN_STREAM ...) and their fields; data frames
    have ``type`` 0. ``headers`` maps lower-case names to values (SYN_STREAM, SYN_REPLY,
    HEADERS); ``status`` is RST_STREAM's / GOAWAY's code; ``ping_id`` PING's id."""
    type: int
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    status: int = 0
    ping_id: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class Session:
    """One side's framing state: feed received bytes, take parsed frames; build frames to send.

    ``feed(data) -> list[Frame]`` (raises ProtocolError); the ``*_frame`` methods return bytes.
    Header compression state is per session and direction, as SPDY requires.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    # ---- reading ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Frame]:
        """Append received bytes; return the frames they complete (in order)."""
        self._buf += data
        out = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head, body = bytes(self._buf[:8]), bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            out.append(self._parse(head, body))
        return out

    def _parse(self, head: bytes, body: bytes) -> Frame:
        first, flags = struct.unpack(">I", head[:4])[0], head[4]
        if not first & 0x80000000:
            return Frame(0, stream_id=first & 0x7FFFFFFF, flags=flags, data=body)
        version, ftype = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        try:
            if ftype == SYN_STREAM:
                sid = struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF
                return Frame(ftype, stream_id=sid, flags=flags, headers=self._headers(body[10:]))
            if ftype in (SYN_REPLY, HEADERS):
                sid = struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF
                return Frame(ftype, stream_id=sid, flags=flags, headers=self._headers(body[4:]))
            if ftype == RST_STREAM:
                sid, status = struct.unpack(">II", body[:8])
                return Frame(ftype, stream_id=sid & 0x7FFFFFFF, flags=flags, status=status)
            if ftype == PING:
                return Frame(ftype, flags=flags, ping_id=struct.unpack(">I", body[:4])[0])
            if ftype == GOAWAY:
                sid, status = struct.unpack(">II", body[:8])
                return Frame(ftype, stream_id=sid & 0x7FFFFFFF, flags=flags, status=status)
            if ftype == WINDOW_UPDATE:
                return Frame(ftype, stream_id=struct.unpack(">I", body[:4])[0] & 0x7FFFFFFF, flags=flags)
        except struct.error:
            raise ProtocolError(f"truncated SPDY control frame of type {ftype}") from None
        return Frame(ftype, flags=flags, data=body)  # SETTINGS and others: kept, not interpreted

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"bad SPDY header block: {e}") from None
        try:
            (count,), i, out = struct.unpack(">I", raw[:4]), 4, {}
            for _ in range(count):
                n = struct.unpack(">I", raw[i:i + 4])[0]
                name, i = raw[i + 4:i + 4 + n].decode(), i + 4 + n
                n = struct.unpack(">I", raw[i:i + 4])[0]
                value, i = raw[i + 4:i + 4 + n].decode(), i + 4 + n
                out[name.lower()] = value.split("\x00")[0]
        except (struct.error, UnicodeDecodeError):
            raise ProtocolError("malformed SPDY header block") from None
        return out

    # ---- writing ---------------------------------------------------------------------------
    @staticmethod
    def _control(ftype: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(body)) + body

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.lower().encode() + struct.pack(">I", len(v.encode())) + v.encode()
            for k, v in headers.items())
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_stream_frame(self, stream_id: int, headers: dict[str, str], *, fin: bool = False) -> bytes:
        """SYN_STREAM opening ``stream_id`` (priority 0, no associated stream)."""
        body = struct.pack(">IIBB", stream_id, 0, 0, 0) + self._block(headers)
        return self._control(SYN_STREAM, FLAG_FIN if fin else 0, body)

    def syn_reply_frame(self, stream_id: int, headers: dict[str, str] | None = None) -> bytes:
        """SYN_REPLY accepting ``stream_id``."""
        return self._control(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._block(headers or {}))

    @classmethod
    def data_frames(cls, stream_id: int, data: bytes, *, fin: bool = False) -> list[bytes]:
        """DATA frames carrying ``data`` (split below the 24-bit length limit); FIN on the last."""
        chunks = [data[i:i + MAX_FRAME_LENGTH] for i in range(0, len(data), MAX_FRAME_LENGTH)] or [b""]
        return [struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin and i == len(chunks) - 1 else 0) << 24)
                            | len(c)) + c for i, c in enumerate(chunks)]

    @classmethod
    def rst_stream_frame(cls, stream_id: int, status: int = RST_CANCEL) -> bytes:
        """RST_STREAM of ``stream_id`` with ``status``."""
        return cls._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    @classmethod
    def ping_frame(cls, ping_id: int) -> bytes:
        """PING (also the answer to one: same id)."""
        return cls._control(PING, 0, struct.pack(">I", ping_id))

    @classmethod
    def goaway_frame(cls, last_stream_id: int, status: int = 0) -> bytes:
        """GOAWAY naming the last stream this side handled."""
        return cls._control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))
