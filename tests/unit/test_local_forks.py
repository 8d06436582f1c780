"""The local backend's fork server: each worker forked fresh from a server that imported the libraries once,
controlled by the host like a started one, and a server that fails only means workers start the plain way."""

import os
import sys

import psutil
import pytest

from harness.backends import local_forks
from harness.backends.base import Built
from harness.backends.local import LocalBackend, make_venv
from harness.measurement import WorkerSpec, running_worker

slow = pytest.mark.slow      # a server imports torch and transformers: seconds


def harness_built(tmp_path):
    return Built(True, sys.executable, str(tmp_path), tmp_path / "build.log", cached=True)


def team_built(tmp_path):
    """A team's environment as the local backend makes it: a venv layered over the harness's."""
    make_venv(tmp_path / "venv")
    return Built(True, str(tmp_path / "venv" / "bin" / "python"), str(tmp_path), tmp_path / "build.log")


def side(built):
    return WorkerSpec("reference", built, "unused:Unused", timeout_s=120)


@slow
def test_each_worker_is_a_fresh_fork_in_its_own_session_and_the_server_goes_with_the_pool(tmp_path):
    backend, built = LocalBackend(tmp_path / "cache"), team_built(tmp_path)
    seen = []
    with backend.worker_pool(built, tmp_path / "forkserver.log"):
        server = backend._fork_servers[built.handle].process
        for task in ("csl", "cmrc2018"):
            with running_worker(backend, side(built), tmp_path / f"worker-{task}.log") as link:
                pid = link.host_pid
                _, reply = link.call("prepare", device="cpu")
                assert "torch" in reply["imported"]
                worker = psutil.Process(pid)
                assert worker.ppid() == server.pid             # forked by the server, not started by the host
                assert os.getsid(pid) == pid and os.getpgid(pid) == pid   # frozen and killed as a group
                assert worker.cwd() == str(tmp_path / f"worker-{task}-scratch")
                seen.append(pid)
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert server.poll() is None
    assert len(set(seen)) == 2
    assert server.poll() is not None                            # stopped with the pool


@slow
def test_a_frozen_worker_dies_when_the_host_goes_away(tmp_path):
    """The host killed while the team's worker is stopped (its reference being timed): the server sees its
    channel close, kills what is under it, and the worker, stopped or not, goes with it."""
    import time

    backend, built = LocalBackend(tmp_path / "cache"), team_built(tmp_path)
    with backend.worker_pool(built, tmp_path / "forkserver.log"):
        server = backend._fork_servers[built.handle]
        with running_worker(backend, side(built), tmp_path / "worker.log") as link:
            worker = psutil.Process(link.host_pid)
            link.process.freeze()
            deadline = time.monotonic() + 10          # SIGSTOP is delivered, not done, when kill() returns
            while worker.status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
                time.sleep(0.01)
            assert worker.status() == psutil.STATUS_STOPPED
            server._control.close()              # what the host's death does to the server's channel
            deadline = time.monotonic() + 20
            while worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
            server.process.wait(timeout=20)      # and the server ended


@slow
def test_the_harness_environments_server_serves_every_pool_of_the_process(tmp_path):
    """The reference's server runs only harness code: a batch (or a test session) imports its libraries once."""
    built, pids = harness_built(tmp_path), []
    for run in ("first", "second"):
        backend = LocalBackend(tmp_path / run)
        with backend.worker_pool(built, tmp_path / f"{run}-forkserver.log"):
            with running_worker(backend, side(built), tmp_path / f"{run}.log") as link:
                pids.append(psutil.Process(link.host_pid).ppid())
    assert pids[0] == pids[1] != os.getpid() and psutil.Process(pids[0]).is_running()


@slow
def test_a_server_that_cannot_start_leaves_workers_started_plainly_and_the_log_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(local_forks, "FORKSERVER_MODULE", "harness.probe.no_such_module")
    backend, built = LocalBackend(tmp_path / "cache"), team_built(tmp_path)
    with backend.worker_pool(built, tmp_path / "forkserver.log"):
        with running_worker(backend, side(built), tmp_path / "worker.log") as link:
            assert psutil.Process(link.host_pid).ppid() == os.getpid()      # the host's own child
            link.call("precision")
    assert "No module named harness.probe.no_such_module" in (tmp_path / "forkserver.log").read_text()
    assert "fork server failed" in (tmp_path / "worker.log").read_text()


def test_a_forked_process_that_ended_never_reads_as_alive(tmp_path):
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    watched = local_forks.ForkedProcess(child.pid)
    assert watched.poll() is None
    child.kill()
    child.wait()
    assert watched.poll() == -1 and watched.wait(timeout=1) == -1
    gone = local_forks.ForkedProcess(child.pid)             # nothing runs under that pid now
    assert gone.poll() == -1


@pytest.mark.parametrize("with_numpy", [True, False])
def test_present_pages_are_grouped_into_runs(with_numpy, monkeypatch):
    from harness.probe import forkserver

    if not with_numpy:
        monkeypatch.setitem(sys.modules, "numpy", None)       # the pure-Python path of an image without numpy
    present, absent = 1 << 63, 0x1234                         # bit 63 present; other bits are not
    entries = b"".join(e.to_bytes(8, "little") for e in [present, present | 7, absent, present, absent, absent, present])
    assert forkserver._present_runs(entries) == [(0, 2), (3, 1), (6, 1)]
    assert forkserver._present_runs(b"") == []


def test_a_fork_maps_the_library_pages_its_parent_had_resident():
    """Without it, a forked worker's baseline misses the server's library pages, and the team's load is
    charged for touching them again (bench/memory_growth.py)."""
    from harness.probe import forkserver

    def file_rss_kib(pid):
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("RssFile:"))

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        before = file_rss_kib(os.getpid())
        forkserver.touch_inherited_pages(os.getppid())
        os.write(write, f"{before} {file_rss_kib(os.getpid())}".encode())
        os._exit(0)
    os.close(write)
    before, after = (int(x) for x in os.read(read, 100).split())
    os.waitpid(pid, 0)
    parent = file_rss_kib(os.getpid())
    assert before < parent * 0.5            # a fork starts without its parent's file pages mapped...
    assert after >= parent * 0.9            # ...and has them after


@slow
def test_one_harness_server_at_a_time_and_a_new_one_when_the_environment_changes(tmp_path, monkeypatch):
    from harness.backends import local

    first = local.harness_fork_server({"A": "1", "PYTEST_CURRENT_TEST": "x"}, tmp_path / "1.log")
    assert local.harness_fork_server({"A": "1", "PYTEST_CURRENT_TEST": "y"}, tmp_path / "2.log") is first
    second = local.harness_fork_server({"A": "2"}, tmp_path / "3.log")
    assert second is not first and first.process.wait(timeout=10) is not None      # the old one stopped
    second.close()


def test_a_process_pinned_to_other_cpus_gets_a_new_harness_server(tmp_path, monkeypatch):
    # a Ray worker process runs team after team, each in its own box slot: a fork inherits its server's CPUs,
    # so a server started under slot 0's pinning must not serve slot 1's team
    from harness.backends import local

    affinity = [{0}]
    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: affinity[0])
    first = local.harness_fork_server({"A": "1"}, tmp_path / "1.log")
    assert local.harness_fork_server({"A": "1"}, tmp_path / "2.log") is first
    affinity[0] = {1}
    second = local.harness_fork_server({"A": "1"}, tmp_path / "3.log")
    assert second is not first and first.process.wait(timeout=10) is not None
    second.close()


ADOPTER = """
import os, signal, sys, time
from harness.probe.forkserver import adopt_orphans
signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # as the server does
assert adopt_orphans()
if os.fork() == 0:                  # a worker's child that daemonizes: setsid, fork, parent exits
    os.setsid()
    if os.fork() == 0:
        open(sys.argv[1], "w").write(str(os.getpid()))
        time.sleep(600)
    os._exit(0)
time.sleep(600)
"""


def test_what_a_workers_child_leaves_behind_is_adopted_by_the_server_and_killed_with_it(tmp_path):
    """A daemonized grandchild is nobody's descendant without a subreaper (it goes to init); the server adopts
    it, so walking the server's tree finds it and kill_tree ends it."""
    import subprocess
    import time

    pid_file = tmp_path / "orphan.pid"
    server = subprocess.Popen([sys.executable, "-c", ADOPTER, str(pid_file)])
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        orphan = int(pid_file.read_text())
        assert psutil.Process(orphan).ppid() == server.pid            # adopted, not init's
        assert os.getsid(orphan) != os.getsid(server.pid)               # in another session
        assert orphan in local_forks.descendants(server.pid, None)
        local_forks.kill_tree(server.pid)
        assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
        assert server.poll() is None                                    # the root is left alone
    finally:
        local_forks.kill_tree(server.pid)     # (when an assertion failed first)
        server.kill()
        server.wait()
