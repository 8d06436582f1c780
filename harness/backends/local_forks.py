"""The local backend's fork server, host side: workers forked from a process that imported torch once.

A fresh worker per task costs a start each time, and a start is mostly importing torch and transformers
(about 8 s on a 2-core box with transformers 5). harness.probe.forkserver imports them once, in the team's
environment, before any team code, and forks one worker per request. The host treats a forked worker like a
started one: its own session, its pid checked on its socket, frozen, thawed and killed as a group. When the
server cannot start, stalls or dies, the backend starts that worker the plain way: the server only saves
time, it never decides anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.probe import channel
from harness.safe_files import open_log

FORKSERVER_MODULE = "harness.probe.forkserver"
CONTROL_SOCKET = "forkserver.sock"
# what importing the libraries may take on a busy box before the host stops waiting and starts plainly
HELLO_TIMEOUT_S = 180.0
SPAWN_TIMEOUT_S = 30.0


def descendants(*roots: int | None) -> list[int]:
    """Every process under `roots` (not the roots), each once; a root that is gone has none."""
    import psutil

    found: dict[int, None] = {}
    for root in roots:
        if not root:
            continue
        try:
            found.update((child.pid, None) for child in psutil.Process(root).children(recursive=True))
        except psutil.Error:
            continue
    return list(found)


def kill_tree(*roots: int | None, rounds: int = 5) -> None:
    """SIGKILL every process under `roots` (not the roots), walking again while a walk finds any: a process
    forking as it is killed leaves a child the first walk missed."""
    for _ in range(rounds):
        pids = descendants(*roots)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


class ForkServerFailed(RuntimeError):
    """The server did not start, said something else than expected, or went away."""


class ForkedProcess:
    """A worker forked by the server: not the host's child, so it is watched through its pid and start time
    (a pid reused by another process after it ended never reads as alive). `adopter` is the server's pid when
    the server is the team's own: every other process under it is something the team's workers left behind
    (the server adopts them), to be frozen and killed with the worker."""

    def __init__(self, pid: int, adopter: int | None = None):
        import psutil

        self.pid, self.adopter = pid, adopter
        try:
            self._started = psutil.Process(pid).create_time()
        except psutil.Error:
            self._started = None

    def poll(self) -> int | None:
        """None while it runs; -1 once it has ended (its exit code went to the server, which let it go)."""
        import psutil

        try:
            process = psutil.Process(self.pid)
            if self._started is None or process.create_time() != self._started:
                return -1
            return -1 if process.status() == psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            return -1

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        return -1


class ForkServer:
    """One server process for one interpreter and environment (a team's venv, or the harness's own)."""

    def __init__(self, python: str, env: dict[str, str], log_path: Path, shared: bool = False):
        """`shared`: a server whose workers may belong to different runs (the harness's own, for references):
        its other descendants are not one worker's to freeze or kill."""
        self.shared = shared
        self._dir = Path(tempfile.mkdtemp(prefix=f"harness-forks-{os.getpid()}-"))
        os.chmod(self._dir, 0o700)
        scratch = self._dir / "cwd"       # its working folder: empty, so nothing lands on sys.path before harness
        scratch.mkdir()
        self._listener, path = channel.listen(self._dir, CONTROL_SOCKET)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_log(log_path)
        with os.fdopen(fd, "wb") as log:
            self.process = subprocess.Popen([python, "-m", FORKSERVER_MODULE, str(path)], cwd=scratch, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self._control: socket.socket | None = None
        self.failed = ""

    def _connect(self) -> socket.socket:
        """The server's channel, once it has imported its libraries and said hello."""
        if self._control is not None:
            return self._control
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while True:
            self._listener.settimeout(0.5)
            try:
                control, _ = self._listener.accept()
                break
            except socket.timeout:
                if self.process.poll() is not None:
                    raise ForkServerFailed(f"exited with code {self.process.returncode} before saying hello")
                if time.monotonic() >= deadline:
                    raise ForkServerFailed(f"said no hello within {HELLO_TIMEOUT_S:g} s")
        control.settimeout(max(1.0, deadline - time.monotonic()))
        try:
            hello = channel.recv(control, max_bytes=64 * 1024)
        except (OSError, channel.ChannelError) as exc:
            control.close()
            raise ForkServerFailed(f"no hello: {exc}") from None
        if not isinstance(hello, dict) or hello.get("pid") != self.process.pid:
            control.close()
            raise ForkServerFailed(f"an unexpected hello: {hello!r:.200}")
        self._control = control
        return control

    def spawn(self, worker_socket: Path, log_path: Path, cwd: Path) -> ForkedProcess:
        """A fresh worker connecting to `worker_socket`; ForkServerFailed when the server cannot give one."""
        if self.failed:
            raise ForkServerFailed(self.failed)
        try:
            control = self._connect()
            control.settimeout(SPAWN_TIMEOUT_S)
            nonce = channel.send_request(control, {"op": "spawn", "socket": str(worker_socket),
                                                   "log": str(log_path), "cwd": str(cwd)})
            reply = channel.recv(control, max_bytes=64 * 1024)
            pid = reply.get("pid") if isinstance(reply, dict) and reply.get("nonce") == nonce.hex() else None
            if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
                raise ForkServerFailed(f"an unexpected reply to spawn: {reply!r:.200}")
        except (OSError, channel.ChannelError, ForkServerFailed) as exc:
            self.failed = f"fork server failed: {exc}"
            self.close()
            raise ForkServerFailed(self.failed) from None
        return ForkedProcess(pid, adopter=None if self.shared else self.process.pid)

    def close(self) -> None:
        """Stop the server and every process still under it (its workers are the host's to stop, each on its
        own, before this; what is left is what they left behind); it spawns nothing after."""
        self.failed = self.failed or "fork server closed"
        if self._control is not None:
            self._control.close()
            self._control = None
        kill_tree(self.process.pid)   # what it adopted first: once it is gone, they would go to init
        try:                    # no polite exit: it holds nothing of value, and unloading torch takes seconds
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)
