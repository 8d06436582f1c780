"""The local backend: no Docker. For participants' self-checks, CI, and machines where Docker is absent.

The team folder is copied into a work folder keyed by its content hash and by the environment the harness runs
in (so setup.sh may write there without touching the original, and a build made under another interpreter is
never reused), a virtual environment layered over the harness's own environment is made for it, and setup.sh
runs inside that environment. The worker then runs in a subprocess of its own process group, which is killed
as a whole (forked children included) when the timekeeper is done with it or its deadline passes. There is
no network or filesystem isolation: use Docker for that.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import venv
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness import __version__
from harness.backends.base import WORKER_MODULE, Built, log_tail
from harness.backends.local_forks import ForkedProcess, ForkServer, ForkServerFailed, descendants, kill_tree
from harness.data_files import data_file_bytes
from harness.paths import REPO_DIR
from harness.kernel_memory import MemoryCgroup, move_into, remove_cgroup, worker_cgroup
from harness.safe_files import fresh_dir, open_log
from harness.probe.channel import SOCKET_NAME
from harness.submission import Submission, copy_team_dir

READY_MARK = ".harness-built"
HARNESS_ROOT = REPO_DIR          # this harness's code, put first on the worker's path
LOCAL_BUILDS = "local"             # CACHE_DIR/local/TEAM-KEY/{team,venv}
BUILD_KEY_FILE = "build-key.json"
LAYER_PTH = "_lightlm_harness_env.pth"
# what a team's build may lean on from the harness's environment: a new version of any of them is a new build
KEY_DISTRIBUTIONS = ("torch", "numpy", "transformers", "onnx", "onnxruntime", "onnxruntime-gpu")


def _env_with_venv(venv_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def reaped(command: list[str]) -> list[str]:
    """`command` run under harness.probe.reaped (this interpreter, this harness's code first on its path):
    whatever it leaves running when it exits is killed, daemonized processes included."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HARNESS_ROOT)!r}); "
            "from harness.probe.reaped import main; sys.exit(main())", *command]


def run_logged(command: list[str], cwd: Path, env: dict[str, str], log_path: Path, timeout_s: float
               ) -> tuple[int | None, bool]:
    """Run a command in its own process group with output to `log_path`; (exit code, timed out). When it
    times out or the host is interrupted, every process under it is killed (its tree, then its group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return process.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            _kill_all(process)
            return None, True
        except BaseException:  # Ctrl-C: never leave the team's processes behind
            _kill_all(process)
            raise


def _kill_all(process: subprocess.Popen) -> None:
    kill_tree(process.pid)          # what left the group (setsid) but is still under it, adopted or not
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def harness_site_dirs() -> list[str]:
    """The folders the running harness imports its packages from: venv, uv venv, conda env or the global
    interpreter (with its user site). First the folder holding this very `harness` package, so that the
    probe a team's venv runs is the code the host runs (a checkout or an editable install included)."""
    dirs = [str(HARNESS_ROOT), *site.getsitepackages(),
            sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    unique: list[str] = []
    for folder in dirs:
        folder = os.path.realpath(folder)
        if folder not in unique and os.path.isdir(folder):
            unique.append(folder)
    return unique


def build_environment() -> dict:
    """What a local build depends on beyond the team's files: interpreter, harness environment and version."""
    versions = {}
    for name in KEY_DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {"harness": __version__, "python": sys.version.split()[0],
            "interpreter": os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
            "environment": sys.prefix, "site_dirs": harness_site_dirs(), "packages": versions}


def build_key(content_hash: str, environment: dict) -> str:
    blob = json.dumps({"team": content_hash, **environment}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_folder_name(submission: Submission, environment: dict) -> str:
    """The team's build folder under CACHE/local/ for this environment (`harness gc` keeps these)."""
    return f"{submission.team}-{build_key(submission.content_hash, environment)}"


def make_venv(venv_dir: Path, site_dirs: list[str] | None = None) -> None:
    """A venv layered over the harness's environment, with a `pip` that installs into the venv only.

    Why not `system_site_packages`: that exposes the *base* interpreter's packages (/usr/bin/python3's),
    not those of the venv or conda env the harness was installed into. Instead the venv gets a .pth file
    that adds the harness's site folders (their own .pth files included, so editable installs resolve)
    after its own site-packages: whatever setup.sh installs lands in, and wins from, the team's layer.
    Seeding pip into every venv takes seconds, so when the harness's environment has pip, `pip` is a
    two-line wrapper around `python -m pip`, which installs into the venv just the same.
    """
    site_dirs = harness_site_dirs() if site_dirs is None else site_dirs
    has_pip = any(Path(folder, "pip", "__init__.py").exists() for folder in site_dirs)
    try:
        venv.EnvBuilder(with_pip=not has_pip, symlinks=True, clear=True).create(venv_dir)
    except subprocess.CalledProcessError:  # no ensurepip in this Python (a uv venv over a Debian python)
        venv.EnvBuilder(symlinks=True, clear=True).create(venv_dir)
    own_site = venv_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    own_site.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"import site; site.addsitedir({folder!r})\n" for folder in site_dirs)
    (own_site / LAYER_PTH).write_text(lines, encoding="utf-8")
    if has_pip:
        body = f'exec "{venv_dir / "bin" / "python"}" -m pip "$@"'
    elif not (venv_dir / "bin" / "pip").exists():  # never let setup.sh reach a pip further down PATH
        body = ('echo "pip is not available to this team environment: install pip into the harness\'s '
                'environment (uv pip install pip)" >&2; exit 1')
    else:
        return
    for name in ("pip", "pip3"):
        wrapper = venv_dir / "bin" / name
        wrapper.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        wrapper.chmod(0o755)


# Variables that change while one process runs and mean nothing to a worker (pytest names the running test).
# Every other variable is part of the server's key: a worker may read any of them (torch, CUDA, OpenMP and
# Hugging Face read dozens), and a fork sees its server's environment, not the caller's.
VOLATILE_VARIABLES = ("PYTEST_CURRENT_TEST",)
_harness_server: tuple[str, ForkServer] | None = None       # (environment key, server), one per process


def harness_fork_server(env: dict[str, str], log_path: Path) -> ForkServer:
    """The fork server of the harness's own interpreter, one per process: started on first use, started
    anew when it failed, the environment changed or this process was pinned to other CPUs (a box slot: a fork
    inherits its server's CPUs), the old one stopped; stopped when the process exits."""
    global _harness_server
    key = json.dumps({"env": {k: v for k, v in env.items() if k not in VOLATILE_VARIABLES},
                      "cpus": sorted(os.sched_getaffinity(0))}, sort_keys=True)
    if _harness_server is not None:
        current_key, current = _harness_server
        if current_key == key and not current.failed:
            return current
        current.close()
    else:
        atexit.register(_close_harness_server)
    _harness_server = (key, ForkServer(sys.executable, env, log_path, shared=True))
    return _harness_server[1]


def _close_harness_server() -> None:
    if _harness_server is not None:
        _harness_server[1].close()


class LocalBackend:
    name = "local"

    def __init__(self, cache_dir: Path, setup_timeout_s: float = 1800):
        self.cache_dir = Path(cache_dir)
        self.setup_timeout_s = setup_timeout_s
        self._fork_servers: dict[str, ForkServer] = {}      # by interpreter, while a worker_pool is open

    def build_root(self, submission: Submission, environment: dict | None = None) -> Path:
        """Where this content, built in this harness environment, lives."""
        environment = build_environment() if environment is None else environment
        return self.cache_dir / LOCAL_BUILDS / build_folder_name(submission, environment)

    def discard(self, submission: Submission) -> None:
        """Forget the team's built folder (--rebuild)."""
        shutil.rmtree(self.build_root(submission), ignore_errors=True)

    def build(self, submission: Submission, work_dir: Path) -> Built:
        """Copy the team, make its venv and run its setup script once per content hash and environment.

        Only a finished build is marked ready and reused; a failed one is built again next time."""
        environment = build_environment()
        root = self.build_root(submission, environment)
        team_copy, venv_dir = root / "team", root / "venv"
        log_path = work_dir / "build.log"
        python = venv_dir / "bin" / "python"
        if (root / READY_MARK).exists():
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(f"cached build {root}\n", encoding="utf-8")
            return Built(True, str(python), str(team_copy), log_path, cached=True)
        shutil.rmtree(root, ignore_errors=True)
        copy_team_dir(submission.team_dir, team_copy)
        make_venv(venv_dir, environment["site_dirs"])
        key = {"team": submission.team, "content_hash": submission.content_hash, **environment}
        (root / BUILD_KEY_FILE).write_text(json.dumps(key, indent=2), encoding="utf-8")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ ./{submission.setup}  (in {team_copy})\n", encoding="utf-8")
        code, timed_out = run_logged(reaped([str(team_copy / submission.setup)]), team_copy,
                                     _env_with_venv(venv_dir), log_path, self.setup_timeout_s)
        if timed_out or code != 0:
            why = f"timed out after {self.setup_timeout_s:g} s" if timed_out else f"exited with code {code}"
            tail = log_tail(log_path, 3).replace("\n", " | ")
            return Built(False, str(python), str(team_copy), log_path,
                         error=f"setup script {submission.setup} {why}: {tail}")
        (root / READY_MARK).write_text("ok\n", encoding="utf-8")
        return Built(True, str(python), str(team_copy), log_path)

    def build_reference(self, reference_dir: Path, work_dir: Path) -> Built:
        """The reference needs nothing beyond the harness's own environment (torch and transformers)."""
        return Built(True, sys.executable, str(Path(reference_dir).resolve()), work_dir / "build.log", cached=True)

    def weight_file_bytes(self, built: Built, code: dict | None = None) -> int:
        """The whole build folder: the team's copy and its venv, where setup.sh may have fetched weights. Every
        data file counts (harness.data_files.data_file_bytes); code only where the worker mapped it executable
        (`code`: its executable_mappings)."""
        return data_file_bytes(Path(built.team_dir).parent, code)

    def worker_env(self, built: Built) -> dict[str, str]:
        """The environment a worker (or its fork server) runs in: the team's venv, or the harness's own."""
        env = _env_with_venv(Path(built.handle).parent.parent) if built.handle != sys.executable else dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join([str(HARNESS_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        return env

    @contextmanager
    def worker_pool(self, built: Built, log_path: Path) -> Iterator[None]:
        """While open, workers of `built` are forked from a server that imported torch and transformers once
        (harness.backends.local_forks), each as fresh as a started one. A team's server starts now, in the
        background, and is stopped on the way out. The server of the harness's own environment (the
        reference's) runs no code but the harness's and is kept for the process's life: a batch, or a test
        session, imports the reference's libraries once."""
        if built.handle == sys.executable:
            server = harness_fork_server(self.worker_env(built), Path(log_path).resolve())
            owned = False
        else:
            server = ForkServer(built.handle, self.worker_env(built), Path(log_path).resolve())
            owned = True
        self._fork_servers[built.handle] = server
        try:
            yield
        finally:
            self._fork_servers.pop(built.handle, None)
            if owned:
                server.close()

    def start_worker(self, built: Built, channel_dir: Path, log_path: Path) -> "LocalWorker":
        """The worker in its own session, connected to the host's socket in channel_dir: forked by the open
        worker_pool's server, or (without one, or when it fails) a subprocess started from scratch.

        Its working folder is an empty scratch folder beside its log, never the team folder, so that
        nothing the team ships is on sys.path before the harness is imported.
        """
        log_path = Path(log_path).resolve()
        scratch = log_path.parent / f"{log_path.stem}-scratch"
        fresh_dir(scratch)
        socket_path = Path(channel_dir) / SOCKET_NAME
        note, server = b"", self._fork_servers.get(built.handle)
        if server is not None:
            try:
                return LocalWorker(server.spawn(socket_path, log_path, scratch), log_path)
            except ForkServerFailed as exc:      # said in the worker's log; started plainly below
                note = f"harness: {exc}; this worker is started without it\n".encode()
        env = self.worker_env(built)
        command = [built.handle, "-m", WORKER_MODULE, str(socket_path)]
        fd = open_log(log_path)
        os.write(fd, note)
        with os.fdopen(fd, "wb") as log:
            process = subprocess.Popen(command, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return LocalWorker(process, log_path)


def own_memory_cgroup(pid: int) -> tuple[MemoryCgroup | None, str]:
    """A memory cgroup made for worker `pid` under the harness's own, with the worker moved in, where the box
    lets this user make one (harness.kernel_memory.worker_cgroup); else (None, why not)."""
    group, why = worker_cgroup(f"harness-worker-{os.getpid()}-{pid}")
    if group is None:
        return None, why
    why = move_into(group, pid)
    if why:
        remove_cgroup(group)
        return None, why
    return group, ""


class LocalWorker:
    # a box may delegate no cgroup to the harness (a participant's laptop, a non-root user): there the kernel's
    # accounting is a note on the row, not a flag (harness.kernel_memory.kernel_notes)
    kernel_memory_required = False

    def __init__(self, process: subprocess.Popen | ForkedProcess, log_path: Path):
        self.process, self.log_path = process, log_path
        self.adopter = getattr(process, "adopter", None)   # a team's fork server: it holds what the worker left
        self.pid = process.pid            # the worker link checks that this process, and no other, connects
        self._cgroup, self._cgroup_why = own_memory_cgroup(process.pid)
        self.forked = isinstance(process, ForkedProcess)   # shares its server's pages until it writes them

    def memory_cgroup(self) -> tuple[MemoryCgroup | None, str]:
        """The worker's own memory cgroup (made for it before it ran any team code, where the box allows),
        or (None, why not): the kernel's accounting of its tree (harness.kernel_memory)."""
        return self._cgroup, self._cgroup_why

    def alive(self) -> bool:
        return self.process.poll() is None

    def host_pid(self) -> int | None:
        return self.process.pid

    def host_pids(self) -> set[int]:
        """The worker, every process under it, and every process its team's fork server adopted (what freeze
        stops); the worker's own pid even once it is gone (NVML may still list its last samples)."""
        return {self.process.pid, *self._descendants()}

    def kill(self) -> None:
        """The worker's group, then every process descended from it or left behind by it (a team's server
        adopts those: harness.probe.forkserver), walking again while any is found."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_tree(self.process.pid, self.adopter)

    def _descendants(self) -> list[int]:
        """Every process under the worker, and every other one its team's fork server holds: what a worker's
        child left behind with setsid or a double fork, adopted by the server."""
        return descendants(self.process.pid, self.adopter)

    def _signal(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def freeze(self) -> None:
        """SIGSTOP to the worker's process group (its session leader's), then to every process descended from
        it: a child that left the group with setsid is stopped too (harness.freezing)."""
        try:
            os.killpg(self.process.pid, signal.SIGSTOP)
        except ProcessLookupError:
            return
        self._signal(self._descendants(), signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(self._descendants(), signal.SIGCONT)
        try:
            os.killpg(self.process.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def close(self) -> int | None:
        """Give the worker a moment to exit after `stop`, then kill its whole group (forks included)."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.kill()
        self.process.wait()
        if self._cgroup is not None:
            remove_cgroup(self._cgroup)
        return code
