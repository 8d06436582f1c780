"""The channel between the timekeeper (host) and a worker (team or reference): framed messages over a Unix socket.

Standard library only: the worker side runs inside team images. A frame is a 4-byte big-endian length and
that many bytes of body. The length is checked against MAX_MESSAGE_BYTES before anything is read, so
a hostile worker cannot make the host allocate without bound; anything that is not a well-formed frame is a
ChannelError (never a crash of the host).

The two directions differ because trust does. What the worker sends (hello, replies, predictions) is
UTF-8 JSON, which the host decodes without running anything. What the host sends (requests, batches) is a
pickle: the worker trusts its host, and unpickling a 16-example batch costs a quarter of parsing it as JSON
(about 12 us against 44 us for csl on the dev box), time both sides would otherwise pay inside the timed
round trip. The host never unpickles anything.

Every request carries a fresh nonce of NONCE_BYTES random bytes ahead of its pickle, and every reply must echo
it (hex, under "nonce"): a worker cannot answer a request before it has read it, so a reply written ahead of
its request can never be timed at about 0 s. Replies are also bounded in nesting depth (MAX_DEPTH): a
100,000-deep reply is a ChannelError, not a RecursionError in the host.

The host creates and listens on the socket in a folder it owns (mounted read-only into containers, so the
team cannot swap the socket for something else); the worker connects to it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import struct
import sys
from pathlib import Path
from typing import Any, Callable

PROTOCOL_VERSION = 3          # 2: requests are pickles, the worker has `prepare`; 3: requests carry a nonce
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 32                # containers inside containers in a reply; predictions need five or six
NONCE_BYTES = 8
SOCKET_NAME = "worker.sock"
_HEADER = struct.Struct(">I")


class ChannelError(Exception):
    """The other side sent something that is not a frame of this protocol, or went away."""


_PICKLE_PROTOCOL = 4   # every Python 3.8+ reads it, whatever the team image ships


def _frame(body: bytes) -> bytes:
    if len(body) > MAX_MESSAGE_BYTES:
        raise ChannelError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return _HEADER.pack(len(body)) + body


def encode(message: Any) -> bytes:
    """One whole JSON frame (worker to host)."""
    return _frame(json.dumps(message, separators=(",", ":")).encode("utf-8"))


def request_body(message: Any) -> bytes:
    """A request's pickle (host to worker), made before timing starts: each send only puts a fresh nonce and
    the frame header in front of it (request_frame), so the timed unit is the round trip itself."""
    return pickle.dumps(message, protocol=_PICKLE_PROTOCOL)


def request_frame(body: bytes, nonce: bytes) -> bytes:
    """One whole request frame: header, the nonce the reply must echo, the request's pickle."""
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce is {NONCE_BYTES} bytes")
    return _frame(nonce + body)


def new_nonce() -> bytes:
    return os.urandom(NONCE_BYTES)


def decode_request(body: bytes) -> tuple[str, Any]:
    """A request from the host: (its nonce as hex, the message). Only the worker calls this: it trusts its
    host, never the reverse."""
    if len(body) < NONCE_BYTES:
        raise ChannelError(f"frame of {len(body)} bytes is too short to be a request from the host")
    try:
        return bytes(body[:NONCE_BYTES]).hex(), pickle.loads(body[NONCE_BYTES:])
    except Exception as exc:
        raise ChannelError(f"frame is not a request from the host: {type(exc).__name__}: {exc}") from None


MAX_INT = 2**63 - 1           # a number in a reply beyond this is no count, size or id the host can use
# Lone surrogates reach a decoded string only through a \uD800-\uDFFF escape; UTF-8 bytes cannot carry one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def _fault(value: Any, limit: int, strings: bool, numbers: bool) -> str | None:
    """Why a decoded value cannot be used whole by the host, or None: containers nested deeper than `limit`,
    and (when asked) a string that does not encode as UTF-8 (a lone surrogate) or an integer beyond
    MAX_INT. One iterative walk: a deep value cannot exhaust the stack here."""
    scalars = strings or numbers
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return f"frame nests deeper than {limit} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if scalars or isinstance(child, (dict, list)))
        elif strings and isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"frame holds a string that is not valid Unicode (a lone surrogate): {item!r:.60}"
        elif numbers and isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            return f"frame holds the integer {str(item)[:30]}..., beyond {MAX_INT}"
    return None


def _not_finite(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def decode(body: bytes) -> Any:
    """A worker's message, or a ChannelError: strict UTF-8 JSON (no NaN or Infinity) nested at most MAX_DEPTH
    deep, whose strings all encode as UTF-8 again and whose integers fit in 64 bits: whatever the host
    later writes (result.json, prediction files, the CSV) can be written. The string and number checks run
    only when the raw bytes hold a surrogate escape or a 19-digit run, so an ordinary reply is walked once,
    for its depth."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_not_finite)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChannelError(f"frame is not UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise ChannelError(f"frame nests deeper than this host decodes (the limit is {MAX_DEPTH})") from None
    fault = _fault(value, MAX_DEPTH, _SURROGATE_ESCAPE.search(body) is not None,
                   _LONG_NUMBER.search(body) is not None)
    if fault:
        raise ChannelError(fault)
    return value


def _recv_exactly(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ChannelError(f"the other side closed the channel ({got} of {size} bytes received)")
        got += n
    return buffer          # no copy: json, pickle and decode all read a bytearray


def recv_frame(sock: socket.socket, max_bytes: int = MAX_MESSAGE_BYTES) -> bytearray:
    """The raw body of the next frame (undecoded: the timekeeper stops its clock before decoding)."""
    (size,) = _HEADER.unpack(_recv_exactly(sock, _HEADER.size))
    if size > max_bytes:
        raise ChannelError(f"frame of {size} bytes announced; the limit is {max_bytes}")
    return _recv_exactly(sock, size)


def send(sock: socket.socket, message: Any) -> None:
    sock.sendall(encode(message))


def recv(sock: socket.socket, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    return decode(recv_frame(sock, max_bytes))


def send_request(sock: socket.socket, message: Any, nonce: bytes | None = None) -> bytes:
    """Send one request; returns its nonce."""
    nonce = nonce or new_nonce()
    sock.sendall(request_frame(request_body(message), nonce))
    return nonce


def recv_request(sock: socket.socket, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[str, Any]:
    """(nonce as hex, message): the worker echoes the nonce in its reply."""
    return decode_request(recv_frame(sock, max_bytes))


def listen(channel_dir: Path, name: str = SOCKET_NAME) -> tuple[socket.socket, Path]:
    """A listening socket in `channel_dir` (created fresh by the caller); connectable by the worker's uid."""
    path = Path(channel_dir) / name
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o777)   # the container's non-root user must connect; the folder itself is read-only to it
    server.listen(1)
    return server, path


def connect(path: str | Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return sock


def serve_main(argv: list[str] | None, program: str, serve: Callable[[socket.socket], None]) -> int:
    """`python -m PROGRAM SOCKET`: connect to the host's socket and serve on it until the host goes away."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m {program} SOCKET", file=sys.stderr)
        return 2
    sock = connect(args[0])
    try:
        serve(sock)
    finally:
        sock.close()
    return 0
