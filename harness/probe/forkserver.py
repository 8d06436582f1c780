"""python -m harness.probe.forkserver SOCKET: import the libraries once, then fork a fresh worker per request.

The local backend gives the team a fresh worker for every task (a baseline no team code can inflate), and a
worker's start is mostly importing torch and transformers: seconds each time. This server pays that once per
team: it imports what `prepare` would (worker.import_libraries and transformers' BERT classes), runs no kernel
and no team code, and then, for each `spawn` request, forks a child that becomes a worker exactly as
`python -m harness.probe.worker WORKER_SOCKET` would: its own session (the host freezes and kills it as a
group), its own log, an empty scratch folder as its working folder.

Nothing here is trusted by the host more than a worker is: the host checks each worker's pid on its socket,
and a server that fails or stalls only means the host starts its workers the plain way.

The server is the subreaper of its workers' trees: a process that a worker's child leaves behind (a setsid, a
double fork) is reparented to it rather than to init, so the host, walking the server's descendants, still
freezes and kills it (harness.backends.local.LocalWorker).

Requests (host to server, nonce-framed pickles): spawn {socket, log, cwd} -> {pid}. Any other request is
answered and ends the server, as does the host closing the channel (the host's close kills it outright); a
server whose host went away kills every process under it first, and each worker dies with its server
(PR_SET_PDEATHSIG), so a worker the host froze never stays stopped after the host is gone.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import struct
import sys
import traceback

from harness.probe import channel


# Imported by each forked worker's own prepare, not by the server: cheap to import (0.2 s), and what importing
# it touches must be in the worker's memory baseline. A fork inherits the server's memory but not its page
# tables for shared library code, so a library the server imported would be paged in again by the first
# session the team builds, and charged to the team (measured, bench/memory_growth.py: the ONNX team 10-14 MiB
# beyond a plainly started worker).
IMPORTED_BY_EACH_WORKER = ("onnxruntime",)


def import_model_classes() -> None:
    """transformers' modelling machinery (most of its import time): imported, never run."""
    try:
        from transformers import BertConfig, BertModel  # noqa: F401
    except Exception:          # no transformers here: the worker's prepare finds nothing to warm either
        pass


def touch_inherited_pages(parent: int) -> int:
    """Map into this fork the library pages its parent had resident; the number touched.

    A fork shares its parent's memory but, for shared library code and other file mappings, not its page
    tables: a page the server touched while importing counts in a plainly started worker's resident memory
    from the start, but in a fork only once touched again, which the team's model load would then be charged
    for (measured: about 3 MiB of torch). Mapping the pages the parent's /proc/PID/pagemap shows present, a
    run of them at a time (_populate), makes the fork's baseline what a plainly started worker's would be.
    Pages of readable file mappings only, and only present ones (never past a file's end)."""
    page = os.sysconf("SC_PAGE_SIZE")
    touched = 0
    with open(f"/proc/{parent}/pagemap", "rb") as pagemap, open("/proc/self/maps", encoding="ascii") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or not fields[1].startswith("r") or fields[4] == "0" or fields[5].startswith("["):
                continue          # anonymous memory is inherited resident; [vvar] and the like are not files
            start, end = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(start // page * 8)
            for first, count in _present_runs(pagemap.read((end - start) // page * 8)):
                _populate(start + first * page, count * page, page)
                touched += count
    return touched


def _present_runs(entries: bytes) -> list[tuple[int, int]]:
    """(first page, pages) of each run of present pages in a stretch of pagemap entries (bit 63: present)."""
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is not None:
        present = np.concatenate(([0], (np.frombuffer(entries, dtype="<u8") >> np.uint64(63)).astype(np.int8), [0]))
        edges = np.flatnonzero(np.diff(present))
        return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2])]
    runs: list[tuple[int, int]] = []
    for index, (entry,) in enumerate(struct.iter_unpack("<Q", entries)):
        if entry >> 63:
            if runs and runs[-1][0] + runs[-1][1] == index:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((index, 1))
    return runs


_MADV_POPULATE_READ = 22             # Linux 5.14: map a range's pages in one call, as reading them would
_libc = ctypes.CDLL(None, use_errno=True)


def _populate(address: int, length: int, page: int) -> None:
    """Map [address, address + length) into this process: one madvise, or a read of each page where the
    kernel is older than 5.14."""
    if _libc.madvise(ctypes.c_void_p(address), ctypes.c_size_t(length), _MADV_POPULATE_READ) == 0:
        return
    for offset in range(0, length, page):
        ctypes.string_at(address + offset, 1)


PR_SET_PDEATHSIG = 1               # linux/prctl.h
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def adopt_orphans() -> bool:
    """Make this process the subreaper of its descendants (not inherited by forks); False where it cannot."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def end_descendants() -> None:
    """SIGKILL every process under this one (its workers, what they left behind), read from /proc: the
    host went away without stopping them, and a worker it had frozen would otherwise stay stopped for good."""
    for _ in range(5):
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as stat:
                        ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        found, todo = [], [os.getpid()]
        while todo:
            kids = children.get(todo.pop(), [])
            found += kids
            todo += kids
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def become_worker(request: dict, control, server: int) -> None:
    """In the forked child: detach, redirect, serve as a worker, and exit without running the server's
    clean-ups (os._exit)."""
    code = 1
    try:
        control.close()
        os.setsid()
        # dies with the server (which ends when the host's channel closes): a worker the host froze, then
        # died, would otherwise stay stopped for good
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != server:                       # it died before that took hold
            os._exit(1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)     # the team's subprocess.wait needs its children
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        os.chdir(request["cwd"])
        note = ""
        try:
            touch_inherited_pages(os.getppid())
        except (OSError, ValueError) as exc:     # no pagemap here: the baseline is a few MiB low, said on the row
            note = (f"the forked worker could not map its server's library pages ({exc}): its memory baseline "
                    "may be a few MiB low, its growth at load as much high")
            print(f"forkserver: {note}", flush=True)
        from harness.probe import worker

        worker.BASELINE_NOTE = note
        code = worker.main([request["socket"]])
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(control) -> None:
    from harness.probe import worker

    imported = worker.import_libraries(tuple(n for n in worker.PREIMPORTS if n not in IMPORTED_BY_EACH_WORKER))
    import_model_classes()
    # What the imports made lives as long as the server: frozen, each worker's collections (several a task:
    # prepare, load) skip its few hundred thousand objects (0.2 s each otherwise) and leave its pages shared.
    # The live-weight scan unfreezes first (live_weights.every_tracked_object): nothing is hidden from it.
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)          # children are reaped by the kernel: no zombies
    if not adopt_orphans():                                 # (adopted ones too)
        print("forkserver: cannot be the subreaper of its workers: what they leave behind goes to init, out "
              "of the host's reach", flush=True)
    channel.send(control, {"ok": True, "hello": True, "pid": os.getpid(), "imported": imported})
    while True:
        try:
            nonce, request = channel.recv_request(control)
        except channel.ChannelError:                         # the host went away
            end_descendants()
            return
        op = request.get("op") if isinstance(request, dict) else None
        if op != "spawn":
            channel.send(control, {"ok": True, "nonce": nonce})
            return
        sys.stdout.flush()
        sys.stderr.flush()
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            become_worker(request, control, server=server)
        channel.send(control, {"ok": True, "nonce": nonce, "pid": pid})


def main(argv: list[str] | None = None) -> int:
    return channel.serve_main(argv, "harness.probe.forkserver", serve)


if __name__ == "__main__":
    sys.exit(main())
