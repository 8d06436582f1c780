"""The host end of a worker's channel: one request at a time, a wall-clock deadline, and the worker's errors.

Everything a worker sends is hostile bytes (README, Threat model): a reply is decoded by harness.probe.channel,
must be an object that echoes its request's nonce and says ok, and anything else (an error, a broken or closed
channel, bytes the host did not ask for, a passed deadline) is that side's WorkerFailed, never the host's
crash. The link also carries the backend's handle on the worker's processes (harness.backends.base.WorkerHandle),
so that the timekeeper can freeze the side not being timed and tell its processes from everyone else's.
The schedule (what is sent when, and what is timed) is harness.timekeeper's.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any, Callable, Sequence

from harness.backends.base import WorkerHandle
from harness.freezing import FreezeUnavailable
from harness.probe import channel


class WorkerFailed(Exception):
    """The worker replied with an error, broke the protocol, or died; the message says which, `side` whose."""

    def __init__(self, message: str, side: str = ""):
        super().__init__(message)
        self.side = side


class WorkerTimeout(WorkerFailed):
    """The worker's wall-clock deadline passed; the caller kills it."""


class WorkerLink:
    """The host end of one worker's channel, with the worker's wall-clock deadline and the backend's handle
    on its processes (None: a bare channel, as in benches and tests; such a side cannot be frozen)."""

    def __init__(self, name: str, sock: socket.socket, deadline: float, hello: dict[str, Any],
                 handle: WorkerHandle | None = None):
        self.name, self.sock, self.deadline, self.hello = name, sock, deadline, hello
        self.environment: dict[str, Any] = {}      # what the worker said about itself at its last load
        self.process = handle                      # freeze, thaw, and every host pid of its processes
        # the worker's own pid on the host, for its resident memory and NVML's per-process memory
        self.host_pid: int | None = handle.host_pid() if handle is not None else None
        # The socket stays blocking (a socket timeout would add a poll() to every send and receive inside
        # the timed unit); a watchdog shuts the connection down at the deadline instead.
        self.sock.settimeout(None)
        self.expired = False
        self._watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        self.expired = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _broken(self, exc: Exception) -> WorkerFailed:
        if self.expired or time.monotonic() >= self.deadline:
            return WorkerTimeout(f"{self.name} worker passed its deadline", self.name)
        return WorkerFailed(f"{self.name} worker channel broke: {exc}", self.name)

    @classmethod
    def accept(cls, name: str, server: socket.socket, alive: Callable[[], bool], deadline: float,
               expected_pid: int | None = None, handle: WorkerHandle | None = None) -> "WorkerLink":
        """Wait for the worker to connect and say hello; give up when it dies or the deadline passes.

        Where the worker's pid is known (a local subprocess: its handle's `pid`), the peer's credentials must
        show that pid: no other process of the same user may stand in for the worker. `handle`: the
        backend's handle on the worker's processes, kept by the link.
        """
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeout(f"{name} worker did not connect before its deadline", name)
            server.settimeout(min(0.5, remaining))
            try:
                sock, _ = server.accept()
                break
            except socket.timeout:
                if not alive():
                    raise WorkerFailed(f"{name} worker exited before connecting", name) from None
        if expected_pid is not None and peer_pid(sock) not in (None, expected_pid):
            sock.close()
            raise WorkerFailed(f"a process other than the {name} worker connected to its socket", name)
        link = cls(name, sock, deadline, {}, handle)
        hello = link.receive()
        if not isinstance(hello, dict) or hello.get("protocol") != channel.PROTOCOL_VERSION:
            raise WorkerFailed(f"{name} worker speaks protocol {hello!r}, not {channel.PROTOCOL_VERSION}: "
                               "rebuild the image with this harness", name)
        link.hello = hello
        return link

    def round_trip(self, request: bytes) -> tuple[float, bytes, str]:
        """Seconds from sending a request (its pickle, channel.request_body) to holding the whole reply, the
        reply's undecoded body, and the nonce (hex) the reply must echo (checked_reply checks it, after the
        clock)."""
        if self.expired or time.monotonic() >= self.deadline:
            raise WorkerTimeout(f"{self.name} worker passed its deadline", self.name)
        nonce = channel.new_nonce()
        frame = channel.request_frame(request, nonce)
        self.refuse_unrequested_bytes()
        try:
            start = time.perf_counter()
            self.sock.sendall(frame)
            body = channel.recv_frame(self.sock)
            seconds = time.perf_counter() - start
        except (OSError, channel.ChannelError) as exc:
            raise self._broken(exc) from None
        return seconds, body, nonce.hex()

    def refuse_unrequested_bytes(self) -> None:
        """Bytes already waiting before the host asks are a reply written ahead of its request, or an extra
        frame: that side's failure (checked before the clock starts, so it costs the timed unit nothing)."""
        try:
            waiting = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise self._broken(exc) from None
        if not waiting:
            raise self._broken(channel.ChannelError("the other side closed the channel"))
        raise WorkerFailed(f"{self.name} worker sent bytes the host had not asked for (a reply ahead of its "
                           "request, or an extra frame)", self.name)

    def receive(self) -> Any:
        """The next message, unprompted (the worker's hello)."""
        try:
            return channel.recv(self.sock)
        except (OSError, channel.ChannelError) as exc:
            raise self._broken(exc) from None

    def call(self, op: str, **fields: Any) -> tuple[float, dict[str, Any]]:
        """An untimed-by-design request (load, params, precision); (round-trip seconds, reply)."""
        seconds, body, nonce = self.round_trip(channel.request_body({"op": op, **fields}))
        return seconds, checked_reply(body, self.name, nonce)

    def send(self, op: str, **fields: Any) -> str:
        """The first half of an untimed call whose reply is read later (call_together); returns the nonce."""
        if self.expired or time.monotonic() >= self.deadline:
            raise WorkerTimeout(f"{self.name} worker passed its deadline", self.name)
        self.refuse_unrequested_bytes()
        try:
            return channel.send_request(self.sock, {"op": op, **fields}).hex()
        except OSError as exc:
            raise self._broken(exc) from None

    def reply(self, nonce: str) -> dict[str, Any]:
        """The second half: the reply to what send() asked, echoing its nonce."""
        try:
            body = channel.recv_frame(self.sock)
        except (OSError, channel.ChannelError) as exc:
            raise self._broken(exc) from None
        return checked_reply(body, self.name, nonce)

    def freeze(self) -> None:
        """Stop every process of this worker (while the other side is timed); FreezeUnavailable if it cannot."""
        if self.process is None:
            raise FreezeUnavailable("no handle on the worker's processes")
        self.process.freeze()

    def thaw(self) -> None:
        if self.process is not None:
            self.process.thaw()

    def host_pids(self) -> set[int]:
        """Every host pid of this worker's processes (the backend's handle says), else its one known pid."""
        if self.process is not None:
            return set(self.process.host_pids())
        return {self.host_pid} if self.host_pid else set()

    def stop(self) -> None:
        self._watchdog.cancel()
        try:
            self.sock.settimeout(2)
            channel.send_request(self.sock, {"op": "stop"})
        except OSError:
            pass
        finally:
            self.sock.close()


def call_together(links: Sequence[WorkerLink], op: str, per_link: Sequence[dict[str, Any]] = (),
                  **fields: Any) -> list[dict[str, Any]]:
    """The same untimed request to several workers at once (prepare, params: seconds of imports or scans
    each, nothing timed), their replies in the order of `links`; one that fails raises as call() would.
    `per_link` adds fields for one link each, in the order of `links`."""
    extra = list(per_link) + [{}] * (len(links) - len(per_link))
    nonces = [link.send(op, **fields, **more) for link, more in zip(links, extra)]
    return [link.reply(nonce) for link, nonce in zip(links, nonces)]


def peer_pid(sock: socket.socket) -> int | None:
    """The connected peer's pid from SO_PEERCRED (Linux); None where the platform cannot say."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def checked_reply(body: bytes, name: str, nonce: str | None = None) -> dict[str, Any]:
    """A reply decoded and checked: an object, echoing the request's nonce, saying ok."""
    try:
        reply = channel.decode(body)
    except channel.ChannelError as exc:
        raise WorkerFailed(f"{name} worker: {exc}", name) from None
    if not isinstance(reply, dict):
        raise WorkerFailed(f"{name} worker replied {type(reply).__name__}, not an object", name)
    if nonce is not None and reply.get("nonce") != nonce:
        raise WorkerFailed(f"{name} worker's reply does not echo its request's nonce (a reply written before "
                           "the request was read, or an extra frame)", name)
    if not reply.get("ok"):
        raise WorkerFailed(str(reply.get("error") or f"{name} worker failed"), name)
    return reply
