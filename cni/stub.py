"""The CNI plugin executable: a stub forwarding one invocation to the node's CNI server.

Like the binaries of Cilium's and Calico's CNI, which hand the work to their
node agent: cni.install writes ``bridge`` / ``host-local`` executables that
run ``python -IS`` (no site, no environment) and call ``main([PLUGIN,
BIN_DIR])`` here. This module imports only ``sys``, ``posix`` and ``_socket``
(not even ``os``, ``socket`` or ``json``, which cost tens of milliseconds on a
busy node), so the stub starts about as fast as the interpreter does.

It reads the server's socket path from ``BIN_DIR/.kubeling-cni-server``
(written by cni.server once it listens), sends the CNI_* environment and stdin
there and relays the answer's stdout, stderr and exit code byte for byte. When
no server answers it becomes the plugin itself (``python -m cni.bridge``), so
the plugins work standalone.

Protocol, one invocation per connection:
  request  ``KCNI/1 PLUGIN ENVLEN STDINLEN\\n`` + ENVLEN bytes of ``KEY=VALUE\\0``
           (CNI_* variables) + STDINLEN bytes of stdin; then the stub shuts its side.
  response ``RC OUTLEN ERRLEN\\n`` + OUTLEN bytes of stdout + ERRLEN of stderr,
           then the server closes.
"""
import _socket
import posix
import sys

MAGIC = b"KCNI/1"
POINTER_NAME = ".kubeling-cni-server"
MODULES = {"bridge": "cni.bridge", "host-local": "cni.host_local"}
CONNECT_TIMEOUT = 2.0
ANSWER_TIMEOUT = 120.0
MAX_REPLAY = 60000  # stdin replayed through a pipe on fallback must fit its buffer


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed message."""

    code = 999  # the CNI error code the stub prints


class NoAnswer(ProtocolError):
    """The server took the request but closed or timed out without answering (it died or is stuck).

    Not retried in-process: the invocation may have run half way; the runtime
    retries (spec code 11, "try again later").
    """

    code = 11


def encode_request(plugin: str, env: dict, stdin: bytes) -> bytes:
    """The request bytes; ``env`` maps bytes or str to bytes or str, only CNI_* keys are sent."""
    block = []
    for k, v in env.items():
        k = k if isinstance(k, bytes) else k.encode("utf-8", "surrogateescape")
        if k.startswith(b"CNI_"):
            v = v if isinstance(v, bytes) else v.encode("utf-8", "surrogateescape")
            block.append(k + b"=" + v + b"\0")
    envb = b"".join(block)
    return b"%s %s %d %d\n" % (MAGIC, plugin.encode(), len(envb), len(stdin)) + envb + stdin


def decode_request_header(line: bytes) -> tuple[str, int, int]:
    """``KCNI/1 PLUGIN ENVLEN STDINLEN`` -> (plugin, envlen, stdinlen); ProtocolError if malformed."""
    parts = line.strip().split(b" ")
    if len(parts) != 4 or parts[0] != MAGIC:
        raise ProtocolError(f"bad request header {line[:80]!r}")
    try:
        envlen, stdinlen = int(parts[2]), int(parts[3])
    except ValueError:
        raise ProtocolError(f"bad request header {line[:80]!r}") from None
    if envlen < 0 or stdinlen < 0:
        raise ProtocolError("negative length")
    return parts[1].decode("ascii", "replace"), envlen, stdinlen


def decode_env(block: bytes) -> dict:
    """``KEY=VALUE\\0`` entries -> {str: str} (undecodable bytes kept as surrogates)."""
    env = {}
    for entry in block.split(b"\0"):
        if entry:
            k, _, v = entry.partition(b"=")
            env[k.decode("utf-8", "surrogateescape")] = v.decode("utf-8", "surrogateescape")
    return env


def encode_response(rc: int, stdout: bytes, stderr: bytes) -> bytes:
    """The response bytes: exit code, then stdout and stderr verbatim."""
    return b"%d %d %d\n" % (rc, len(stdout), len(stderr)) + stdout + stderr


def decode_response(data: bytes) -> tuple[int, bytes, bytes]:
    """The whole response -> (rc, stdout, stderr); ProtocolError when truncated or malformed."""
    line, nl, rest = data.partition(b"\n")
    if not nl:
        raise ProtocolError("connection closed before an answer")
    try:
        rc, outlen, errlen = (int(x) for x in line.split(b" "))
    except ValueError:
        raise ProtocolError(f"bad response header {line[:80]!r}") from None
    if outlen < 0 or errlen < 0 or len(rest) != outlen + errlen:
        raise ProtocolError(f"response of {len(rest)} bytes, header says {outlen}+{errlen}")
    return rc, rest[:outlen], rest[outlen:]


def server_socket_path(bin_dir: str) -> str:
    """The socket path named in ``bin_dir``'s pointer file, "" when there is none."""
    try:
        fd = posix.open(bin_dir + "/" + POINTER_NAME, posix.O_RDONLY)
    except OSError:
        return ""
    try:
        return posix.read(fd, 4096).decode("utf-8", "surrogateescape").strip()
    finally:
        posix.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = posix.read(fd, 65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def forward(path: str, plugin: str, env: dict, read_stdin) -> tuple[int, bytes, bytes] | None:
    """Run the invocation on the server at ``path``: (rc, stdout, stderr), or None if none answered.

    ``read_stdin()`` is called only once a connection is up, so that a caller
    falling back to the in-process plugin still has its stdin unread.
    Raises ProtocolError when the server answered garbage, NoAnswer when it
    took the request and never answered.
    """
    if not path:
        return None
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(CONNECT_TIMEOUT)
        try:
            s.connect(path)
        except OSError:
            return None
        s.settimeout(ANSWER_TIMEOUT)
        stdin = read_stdin()
        chunks = []
        try:
            s.sendall(encode_request(plugin, env, stdin))
            s.shutdown(_socket.SHUT_WR)
        except OSError:
            return None  # the server went away before taking the request
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except OSError as e:
            raise NoAnswer(f"no answer from the CNI server: {e}") from None
        if not chunks:
            raise NoAnswer("the CNI server closed the connection without an answer")
        return decode_response(b"".join(chunks))
    finally:
        s.close()


def _exec_plugin(plugin: str, root: str, stdin: bytes | None) -> None:
    """Replace this process with the full plugin (``python -m cni.<module>``)."""
    if stdin is not None:  # already read: hand it over through a fresh pipe (configs are small)
        if len(stdin) > MAX_REPLAY:
            raise OSError("configuration too large to replay to the standalone plugin")
        r, w = posix.pipe()
        posix.write(w, stdin)
        posix.close(w)
        posix.dup2(r, 0)
        posix.close(r)
    env = dict(posix.environ)
    old = env.get(b"PYTHONPATH")
    env[b"PYTHONPATH"] = root.encode() + (b":" + old if old else b"")
    posix.execve(sys.executable, [sys.executable, "-m", MODULES[plugin]], env)


def main(argv: list[str]) -> int:
    """``main([PLUGIN, BIN_DIR])``: one CNI invocation; returns the exit code."""
    if len(argv) < 2 or argv[0] not in MODULES:
        sys.stderr.write("usage: stub {bridge|host-local} BIN_DIR\n")
        return 2
    plugin, bin_dir = argv[0], argv[1]
    root = __file__.rsplit("/", 2)[0] if __file__.count("/") >= 2 else "."
    got: list[bytes] = []

    def read_stdin() -> bytes:
        data = b"" if posix.isatty(0) else _read_all(0)
        got.append(data)
        return data

    try:
        answer = forward(server_socket_path(bin_dir), plugin, posix.environ, read_stdin)
    except ProtocolError as e:
        msg = str(e).replace("\\", "/").replace('"', "'")
        sys.stdout.write('{"cniVersion": "1.0.0", "code": %d, "msg": "CNI server: %s", "details": ""}'
                         % (e.code, msg))
        return 1
    if answer is None:
        _exec_plugin(plugin, root, got[0] if got else None)
    rc, out, err = answer
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    if err:
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
