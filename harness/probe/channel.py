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

The host creates and listens on the socket in a folder it owns (mounted read-only into containers, so the
team cannot swap the socket for something else); the worker connects to it.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
from pathlib import Path
from typing import Any

PROTOCOL_VERSION = 2          # 2: requests are pickles, the worker has `prepare`
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
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


def encode_request(message: Any) -> bytes:
    """One whole request frame (host to worker); encoded before timing starts, so the timed unit is the
    round trip itself."""
    return _frame(pickle.dumps(message, protocol=_PICKLE_PROTOCOL))


def decode_request(body: bytes) -> Any:
    """A request from the host. Only the worker calls this: it trusts its host, never the reverse."""
    try:
        return pickle.loads(body)
    except Exception as exc:
        raise ChannelError(f"frame is not a request from the host: {type(exc).__name__}: {exc}") from None


def decode(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChannelError(f"frame is not UTF-8 JSON: {exc}") from None


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


def send_request(sock: socket.socket, message: Any) -> None:
    sock.sendall(encode_request(message))


def recv_request(sock: socket.socket, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
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
