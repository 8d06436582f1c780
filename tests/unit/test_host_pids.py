"""host_pids(): every process of a worker as the host sees it, for the drain check's attribution of device work."""

import subprocess
import time

import docker  # noqa: F401  (the real SDK: DockerWorker imports its errors)

from harness.backends.docker import DockerWorker
from harness.backends.local import LocalWorker


class ContainerWithTop:
    """A running container as the engine reports it: `top` lists host pids (paused or not)."""

    def __init__(self, top=None, pid=4100):
        self._top, self.attrs = top, {"State": {"Pid": pid}}

    def reload(self):
        pass

    def top(self):
        if self._top is None:
            raise docker.errors.APIError("top is not supported")
        return self._top


def test_a_containers_processes_come_from_top_with_its_first_process():
    top = {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
           "Processes": [["1000", "4100", "4080", "0", "16:22", "?", "00:00:01", "python -m harness.probe.worker"],
                         ["1000", "4133", "4100", "9", "16:22", "?", "00:00:03", "python busy.py"]]}
    assert DockerWorker(ContainerWithTop(top), None).host_pids() == {4100, 4133}


class RemovedFromOutside:
    def __getattr__(self, name):
        def gone(*args, **kwargs):
            raise docker.errors.NotFound(f"No such container (during {name})")
        return gone


def test_without_top_a_container_gives_its_first_process_and_gone_gives_none(tmp_path):
    assert DockerWorker(ContainerWithTop(None), None).host_pids() == {4100}
    assert DockerWorker(RemovedFromOutside(), tmp_path / "worker.log").host_pids() == set()


def test_a_local_worker_names_itself_and_every_process_under_it(tmp_path):
    process = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"], start_new_session=True)
    worker = LocalWorker(process, tmp_path / "worker.log")
    try:
        for _ in range(200):                      # until both children have started
            if len(worker.host_pids()) == 3:
                break
            time.sleep(0.01)
        pids = worker.host_pids()
        assert process.pid in pids and len(pids) == 3
    finally:
        worker.kill()
        process.wait()
