"""The Docker backend: the production path. Team code is untrusted, so it runs isolated.

Build: a team image FROM the runner image, the team folder copied in and its setup script run at build time,
tagged by the content hash of the team folder, the harness version, the spec and the runner image, so an
unchanged team is never rebuilt. The generated Dockerfile holds no string of the team's: the setup path (already
matched whole against a strict pattern) reaches the one RUN step as a build argument, in exec form. The build
is bounded by the spec's [build] section: memory and CPUs per step, the network on or off, a wall-clock limit
after which its step container is killed, and how much larger than the runner image the result may be.

Worker: no network, read-only root filesystem with a size-bounded tmpfs /tmp as the only writable place, no
inputs and no output folder mounted (the timekeeper sends every batch over the channel), the host's channel
folder mounted read-only (the team cannot replace the socket), all capabilities dropped, no-new-privileges,
a non-root user, pids/memory/shm/CPU limits from the spec, a log capped by the engine, GPUs when the box has
them. The worker starts isolated (`python -I`, the harness's own root-owned interpreter, from /) so nothing
the team wrote at build time runs before it. The host kills the container when its deadline passes;
containers are always removed, and only a bounded tail of their log is fetched.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import ContextManager

from harness import __version__
from harness.backends.base import LOG_TAIL_BYTES, WORKER_MODULE, Built, log_tail
from harness.data_files import data_bytes_in_tar, tar_file_digests
from harness.freezing import FreezeUnavailable
from harness.paths import REFERENCE_DIR, REPO_DIR
from harness.kernel_memory import MemoryCgroup, memory_cgroup_of
from harness.probe.channel import SOCKET_NAME
from harness.safe_files import open_log
from harness.cpusets import cpuset_text
from harness.slots import Slot
from harness.spec import Spec, parse_size
from harness.submission import Submission, copy_team_dir, hash_team_dir

RUNNER_IMAGE = "lightlm-harness/runner:latest"
RUNNER_USER = "10001:10001"
TEAM_LABEL = "lightlm-harness.team"
CONTAINER_LABEL = "lightlm-harness.run"
OWNER_LABEL = "lightlm-harness.owner"  # which harness process started a container: its own cleanup, its own checks
TEAM_DIR_IN_IMAGE = "/team"
REFERENCE_DIR_IN_IMAGE = "/opt/harness/baselines/bert_reference"
OTHER_REFERENCE_DIR_IN_IMAGE = "/opt/reference"     # a --reference folder other than the bundled one
REFERENCE_IMAGE = "lightlm-reference/reference"
REFERENCE_LABEL = "lightlm-harness.reference"
CHANNEL_IN_CONTAINER = "/channel"
# Where the runner user (setup.sh) can write in a runner image besides the team folder: scanned for weight files.
TEAM_WRITABLE = ("/opt/team-venv", "/home/runner", "/tmp", "/var/tmp", "/run/lock")
HARNESS_PYTHON = "/opt/venv/bin/python3"   # root-owned (Dockerfile.runner); the team's venv is another one
LOG_TAIL_LINES_FETCHED = 2000
# The one command that starts a worker in a container: -I so that nothing in the team folder (the working
# directory) or the environment comes before the installed harness on sys.path.
WORKER_COMMAND = [HARNESS_PYTHON, "-I", "-u", "-m", WORKER_MODULE, f"{CHANNEL_IN_CONTAINER}/{SOCKET_NAME}"]


# No string of the team's is spliced in: the setup path arrives as the build argument TEAM_SETUP and is expanded
# inside double quotes by a fixed exec-form command. setup.sh runs as the runner user with the team venv
# (/opt/team-venv, see Dockerfile.runner) first on PATH; the harness's own files are root-owned.
TEAM_DOCKERFILE = """FROM {runner}
LABEL {label}="{build_id}"
ARG TEAM_SETUP
COPY --chown={user} team {team_dir}
USER {user}
RUN ["/bin/sh", "-c", "cd {team_dir} && exec \\"{team_dir}/$TEAM_SETUP\\""]
"""


# A reference folder other than the bundled one, in an image of its own (build_reference): root-owned, no step
# that runs its code at build time.
REFERENCE_DOCKERFILE = """FROM {runner}
LABEL {label}="1"
COPY reference {reference_dir}
"""


class DockerUnavailable(RuntimeError):
    """No engine answers, or the runner image is missing; the message says what to do."""


def docker_sdk_problem() -> str:
    """Why `import docker` would not give the Docker SDK ('' when it does): missing, or shadowed by a
    folder or module of that name earlier on sys.path (a checkout's `docker/` folder, a stray docker.py)."""
    try:
        spec = importlib.util.find_spec("docker")
    except (ImportError, ValueError) as exc:
        return f"the docker Python package cannot be imported ({exc})"
    if spec is None:
        return "the docker Python package (the Docker SDK) is not installed in this environment"
    if spec.origin in (None, "namespace"):
        where = ", ".join(map(str, spec.submodule_search_locations or [])) or "a namespace package"
        return (f"`import docker` finds the folder {where}, not the Docker SDK: that folder shadows it "
                "(is the SDK installed?)")
    try:
        module = importlib.import_module("docker")
    except Exception as exc:
        return f"the docker Python package at {spec.origin} fails to import ({exc})"
    if not hasattr(module, "from_env"):
        return f"`import docker` finds {spec.origin}, not the Docker SDK: that file shadows it"
    return ""


def connect():
    """A docker client whose engine answers, or DockerUnavailable saying how to get one."""
    problem = docker_sdk_problem()
    if problem:
        raise DockerUnavailable(f"{problem}; install it with `python3 -m pip install docker` (or remove what "
                                "shadows it), or use --backend local")
    import docker

    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception as exc:
        raise DockerUnavailable(f"no Docker engine answers ({exc}); start Docker, or use --backend local") from exc


def pid_namespace() -> str:
    """This process's pid namespace (a harness inside a container sees other pids than the host's)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "?"


def run_owner() -> str:
    """This harness process, as an engine shared with other harness runs can tell it apart: host, pid
    namespace and pid."""
    return f"{socket.gethostname()}:{pid_namespace()}:{os.getpid()}"


def owner_gone(owner: str) -> bool:
    """True when `owner` (a run_owner) names a process of this host and pid namespace that no longer runs;
    False for a live one, another host's or namespace's (nobody here can tell), or a label in another form."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[:2] != [socket.gethostname(), pid_namespace()] or not parts[2].isdigit():
        return False
    pid = parts[2]
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:            # alive, someone else's
        return False
    return False


def containers_of_gone_runs(client) -> list:
    """Harness containers (workers, weight scans) whose harness process is gone: a run killed outright
    leaves them, and a worker it had paused stays paused, holding its memory, until removed."""
    return [container for container in client.containers.list(all=True, filters={"label": CONTAINER_LABEL})
            if owner_gone((container.labels or {}).get(OWNER_LABEL, ""))]


def build_context_prefix() -> str:
    """Temporary build contexts of this process (so checks for leftovers look at their own only)."""
    return f"harness-build-{os.getpid()}-"


def team_image_tag(submission: Submission, spec: Spec, runner_id: str) -> str:
    key = "\0".join([submission.content_hash, __version__, spec.sha256, runner_id])
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in submission.team.lower()).strip(".-") or "team"
    return f"lightlm-team/{name}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def runner_build_hint(runner_image: str) -> str:
    """How to get the runner image, as commands that work from any folder, and how to do without it."""
    repo = REPO_DIR
    if (repo / "Dockerfile.runner").is_file():
        build = (f"`docker build -f {repo / 'Dockerfile.runner'} -t {runner_image} {repo}` (no registry: "
                 f"`{repo / 'runner-image' / 'build-runner-offline.sh'} {runner_image}`)")
    else:  # installed without the repository: the Dockerfile is not on this machine
        build = (f"`docker build -f Dockerfile.runner -t {runner_image} .` in a checkout of the "
                 "lightlm-harness repository (see runner-image/README.md there)")
    return f"build it with {build}, or run without Docker with --backend local"


class DockerBackend:
    name = "docker"

    def __init__(self, cache_dir: Path, spec: Spec, runner_image: str = RUNNER_IMAGE, gpus: bool | None = None,
                 client=None, slot: Slot | None = None):
        self.spec = spec
        self.runner_image = runner_image
        self.slot = slot if slot is not None and not slot.whole_box else None    # one of several on this node
        self.client = client or connect()
        self.gpus = gpus if gpus is not None else "nvidia" in (self.client.info().get("Runtimes") or {})

    def runner_id(self) -> str:
        import docker

        try:
            return self.client.images.get(self.runner_image).id
        except docker.errors.ImageNotFound:
            raise DockerUnavailable(
                f"runner image {self.runner_image} not found: {runner_build_hint(self.runner_image)}") from None

    def discard(self, submission: Submission) -> None:
        """Remove the team's cached image (--rebuild); none there is fine."""
        import docker

        try:
            self.client.images.remove(team_image_tag(submission, self.spec, self.runner_id()), force=True)
        except docker.errors.ImageNotFound:
            pass

    def build(self, submission: Submission, work_dir: Path) -> Built:
        """Build (or reuse) the team image; a failed or over-limit build is the team's, reported with its log.

        Copying the team folder may raise SubmissionError (the folder changed since it was validated): the
        caller turns it into an invalid_submission row. The temporary build context is always removed.
        """
        import docker

        tag = team_image_tag(submission, self.spec, self.runner_id())
        log_path = work_dir / "build.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.images.get(tag)
            log_path.write_text(f"cached image {tag}\n", encoding="utf-8")
            return Built(True, tag, TEAM_DIR_IN_IMAGE, log_path, cached=True)
        except docker.errors.ImageNotFound:
            pass
        build_id = uuid.uuid4().hex
        with tempfile.TemporaryDirectory(prefix=build_context_prefix()) as context:
            copy_team_dir(submission.team_dir, Path(context) / "team")
            (Path(context) / "Dockerfile").write_text(TEAM_DOCKERFILE.format(
                runner=self.runner_image, label=TEAM_LABEL, build_id=build_id, team_dir=TEAM_DIR_IN_IMAGE,
                user=RUNNER_USER), encoding="utf-8")
            error = self._bounded_build(context, tag, log_path, build_id, submission.setup)
        if not error:
            error = self._check_image_growth(tag)
        if error:
            self._prune_failed_build(build_id)
            tail = log_tail(log_path, 3).replace("\n", " | ")
            return Built(False, tag, TEAM_DIR_IN_IMAGE, log_path,
                         error=f"image build failed: {error}" + (f" | {tail}" if tail else ""))
        return Built(True, tag, TEAM_DIR_IN_IMAGE, log_path)

    def weight_file_bytes(self, built: Built, code: dict | None = None) -> int:
        """Bytes that count as weights in every place the runner user could write to during the build
        (TEAM_WRITABLE), read from the image by the host: a container is created, never started, and each
        folder's archive is streamed from the engine and read without writing anything out
        (harness.data_files.data_bytes_in_tar: every data file counts, whatever its size or first bytes; code
        only where the worker mapped it executable, `code` being its executable_mappings). A file the runner
        image already holds with the same content is not the build's and is left out."""
        total = 0
        unchanged = self._runner_files()
        with self._scan_container(built.handle) as container:
            for folder in (built.team_dir, *TEAM_WRITABLE):
                chunks = self._archive(container, folder)
                if chunks is not None:
                    total += data_bytes_in_tar(chunks, folder, code, unchanged.get(folder)).counted
        return total

    def _runner_files(self) -> dict[str, set]:
        """(name, size, sha256) of the runner image's own files in each TEAM_WRITABLE folder, read once."""
        if getattr(self, "_runner_digests", None) is None:
            digests = {}
            with self._scan_container(self.runner_image) as container:
                for folder in TEAM_WRITABLE:
                    chunks = self._archive(container, folder)
                    digests[folder] = tar_file_digests(chunks) if chunks is not None else set()
            self._runner_digests = digests
        return self._runner_digests

    @contextmanager
    def _scan_container(self, image: str):
        """A container of `image`, created and never started, removed on the way out."""
        container = self.client.containers.create(image, command=["true"], network_disabled=True,
                                                  labels={CONTAINER_LABEL: "weight-scan", OWNER_LABEL: run_owner()})
        try:
            yield container
        finally:
            container.remove(force=True)

    @staticmethod
    def _archive(container, folder: str):
        import docker

        try:
            chunks, _ = container.get_archive(folder)
        except docker.errors.NotFound:
            return None
        return chunks

    def build_limits(self) -> dict:
        """The engine's per-step limits for a build, from the spec (CPUs capped at what the engine has)."""
        bounds = self.spec.build
        memory = parse_size(bounds.memory)
        if self.slot:         # a build stays inside its slot's CPUs, as the workers do
            return {"memory": memory, "memswap": memory, "cpusetcpus": cpuset_text(self.slot.cpus[:bounds.cpus])}
        cpus = max(1, min(bounds.cpus, int(self.client.info().get("NCPU") or bounds.cpus)))
        return {"memory": memory, "memswap": memory, "cpusetcpus": f"0-{cpus - 1}"}

    def _bounded_build(self, context: str, tag: str, log_path: Path, build_id: str, setup: str) -> str:
        """Run the build under the spec's wall-clock limit; returns the error, or '' on success.

        The engine's build API has no wall-clock limit, so the build streams in a thread while this one waits;
        past the limit, the build's running step container (found by this build's label) is killed, which
        fails the build, and the thread is given a short while to end.
        """
        limit = self.spec.build.timeout_s
        outcome: dict[str, str] = {}

        def stream() -> None:
            try:
                outcome["error"] = self._stream_build(context, tag, log_path, setup)
            except Exception as exc:  # the engine dropped the build: still the build's failure, never a crash
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=stream, name=f"build-{tag}", daemon=True)
        thread.start()
        try:
            thread.join(limit)
        except BaseException:  # Ctrl-C: never leave the team's build step running
            self._kill_build(build_id)
            raise
        if not thread.is_alive():
            return outcome.get("error", "")
        deadline = time.monotonic() + 60
        while thread.is_alive() and time.monotonic() < deadline:
            self._kill_build(build_id)
            thread.join(1)
        return f"timed out after {limit:g} s (spec build.timeout_s) and was killed"

    def _kill_build(self, build_id: str) -> None:
        """Remove the step containers of one build (they carry its label); the build then fails."""
        for container in self.client.containers.list(all=True, filters={"label": f"{TEAM_LABEL}={build_id}"}):
            try:
                container.remove(force=True)
            except Exception:  # already gone
                pass

    def _stream_build(self, context: str, tag: str, log_path: Path, setup: str) -> str:
        """Run the build, writing its log (up to the spec's log_max_size); returns the engine's error, or ''."""
        error = ""
        network = None if self.spec.build.network else "none"
        budget = parse_size(self.spec.sandbox.log_max_size)
        with log_path.open("w", encoding="utf-8") as log:
            for chunk in self.client.api.build(path=context, tag=tag, rm=True, forcerm=True, decode=True,
                                               buildargs={"TEAM_SETUP": setup}, network_mode=network,
                                               container_limits=self.build_limits()):
                text = chunk.get("stream", "")
                if "error" in chunk:
                    error = chunk["error"].strip()
                    text += f"ERROR: {error}\n"
                if budget > 0 and text:
                    log.write(text[:budget])
                    budget -= len(text)
                    if budget <= 0:
                        log.write(f"\n[log cut at {self.spec.sandbox.log_max_size} (spec sandbox.log_max_size)]\n")
        return error

    def _check_image_growth(self, tag: str) -> str:
        """A team image larger than the runner image by more than the spec allows is removed: '' when within."""
        allowed = parse_size(self.spec.build.max_image_growth)
        growth = self.client.images.get(tag).attrs["Size"] - self.client.images.get(self.runner_image).attrs["Size"]
        if growth <= allowed:
            return ""
        self.client.images.remove(tag, force=True)
        return (f"the image is {growth / 2**30:.2f} GiB larger than the runner image; the spec allows "
                f"{self.spec.build.max_image_growth} (build.max_image_growth)")

    def _prune_failed_build(self, build_id: str) -> None:
        """A failed build leaves untagged layers carrying its label: remove them (only its own: other builds
        may be running on the same engine, and their layers carry the same label key)."""
        self.client.images.prune(filters={"dangling": True, "label": f"{TEAM_LABEL}={build_id}"})

    def build_reference(self, reference_dir: Path, work_dir: Path) -> Built:
        """The bundled reference runs in the runner image itself: no team code in it.

        Another reference folder (`--reference`: a competition's own reference, a test's stand-in) is the
        organizer's code, not a team's: it is copied into an image FROM the runner image, root-owned, with no
        setup step, tagged by its content and the runner image, and built once."""
        work_dir.mkdir(parents=True, exist_ok=True)
        log_path = work_dir / "build.log"
        runner_id = self.runner_id()
        if os.path.realpath(reference_dir) == os.path.realpath(REFERENCE_DIR):
            return Built(True, self.runner_image, REFERENCE_DIR_IN_IMAGE, log_path, cached=True)
        key = "\0".join([hash_team_dir(Path(reference_dir)), __version__, runner_id])
        tag = f"{REFERENCE_IMAGE}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        if self.client.images.list(name=tag):
            log_path.write_text(f"cached image {tag}\n", encoding="utf-8")
            return Built(True, tag, OTHER_REFERENCE_DIR_IN_IMAGE, log_path, cached=True)
        with tempfile.TemporaryDirectory(prefix=build_context_prefix()) as context:
            copy_team_dir(Path(reference_dir), Path(context) / "reference")
            (Path(context) / "Dockerfile").write_text(REFERENCE_DOCKERFILE.format(
                runner=self.runner_image, label=REFERENCE_LABEL, reference_dir=OTHER_REFERENCE_DIR_IN_IMAGE),
                encoding="utf-8")
            self.client.images.build(path=context, tag=tag, rm=True, forcerm=True, network_mode="none")
        log_path.write_text(f"built {tag} from {reference_dir}\n", encoding="utf-8")
        return Built(True, tag, OTHER_REFERENCE_DIR_IN_IMAGE, log_path)

    def container_options(self, channel_dir: Path) -> dict:
        """Everything that isolates a worker, in one place (the integration tests check each of them)."""
        import docker

        box = self.spec.sandbox
        options = dict(
            network_mode="none", read_only=True,
            tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={parse_size(box.tmp_size)},mode=1777"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], user=RUNNER_USER,
            pids_limit=box.pids_limit, mem_limit=box.memory, memswap_limit=box.memory, shm_size=box.shm_size,
            nano_cpus=int(box.cpus * 1e9), environment={"HOME": "/tmp", "PYTHONUNBUFFERED": "1"},
            volumes={str(channel_dir): {"bind": CHANNEL_IN_CONTAINER, "mode": "ro"}},
            labels={CONTAINER_LABEL: "worker", OWNER_LABEL: run_owner()}, detach=True, working_dir="/",
            log_config=docker.types.LogConfig(type="json-file", config={
                "max-size": str(parse_size(box.log_max_size)), "max-file": "1"}),
        )
        if self.slot:         # one slot of several: its CPUs and its GPU only, for the team and the reference
            options.update(cpuset_cpus=self.slot.cpuset(), nano_cpus=int(min(box.cpus, len(self.slot.cpus)) * 1e9))
        if self.gpus:
            gpu = {"device_ids": [str(self.slot.gpu)]} if self.slot and self.slot.gpu is not None else {"count": -1}
            options["device_requests"] = [docker.types.DeviceRequest(**gpu, capabilities=[["gpu"]])]
        return options

    def worker_pool(self, built: Built, log_path: Path) -> ContextManager[None]:
        """Nothing to pool: each worker is a container of its own, started from the image."""
        return nullcontext()

    def start_worker(self, built: Built, channel_dir: Path, log_path: Path) -> "DockerWorker":
        container = self.client.containers.run(built.handle, WORKER_COMMAND,
                                               **self.container_options(Path(channel_dir).resolve()))
        return DockerWorker(container, Path(log_path))


class DockerWorker:
    pid = None      # the peer is not checked against a pid: a container's pid is the engine's to say

    def __init__(self, container, log_path: Path):
        self.container, self.log_path = container, log_path

    def alive(self) -> bool:
        try:
            self.container.reload()
        except Exception:
            return False
        return self.container.status in ("created", "running")

    def host_pid(self) -> int | None:
        """The worker's pid as the host (and NVML) sees it: the container's first process is the worker."""
        try:
            self.container.reload()
            return int(self.container.attrs["State"]["Pid"]) or None
        except Exception:
            return None

    def memory_cgroup(self) -> tuple[MemoryCgroup | None, str]:
        """The container's memory cgroup on the host (where the engine put it: found from the worker's
        /proc/PID/cgroup, and only taken when its path names this container), or (None, why not)."""
        group, why = memory_cgroup_of(self.host_pid())
        if group is not None and self.container.id not in str(group.path):
            return None, f"the worker's cgroup {group.path} does not name its container {self.container.id[:12]}"
        return group, why

    def host_pids(self) -> set[int]:
        """Every process in the container as the host sees it (the engine's `top`: host pids, paused or not),
        the worker's own pid included; just the worker's where `top` fails; empty when the container is gone."""
        pids = set()
        try:
            listing = self.container.top()
            column = listing["Titles"].index("PID")
            pids = {int(row[column]) for row in listing["Processes"]}
        except Exception:   # gone, or an engine that cannot list: fall back on the worker's own pid
            pass
        first = self.host_pid()
        return pids | ({first} if first else set())

    def kill(self) -> None:
        try:
            self.container.unpause()       # a paused container cannot be killed
        except Exception:  # not paused, or already gone
            pass
        try:
            self.container.kill()
        except Exception:  # already gone
            pass

    def freeze(self) -> None:
        """The whole container through the cgroup freezer (the engine's pause), while the other side is timed."""
        import docker

        try:
            self.container.pause()
        except docker.errors.APIError as exc:
            raise FreezeUnavailable(f"the engine would not pause the container: {exc.explanation or exc}") from None

    def thaw(self) -> None:
        import docker

        try:
            self.container.unpause()
        except docker.errors.APIError:   # gone: its side fails through the channel
            pass

    def close(self) -> int | None:
        """Wait briefly for the exit after `stop`, keep a bounded log tail, remove the container.

        A container removed from outside mid-run (the engine answers NotFound) has already failed its side
        through the channel; closing it then only says so in its log."""
        import docker

        code = None
        try:
            try:
                code = self.container.wait(timeout=10).get("StatusCode")
            except Exception:
                self.kill()
            try:
                logs = self.container.logs(stdout=True, stderr=True,
                                           tail=LOG_TAIL_LINES_FETCHED)[-LOG_TAIL_BYTES:]
            except docker.errors.NotFound:
                logs = b"[the worker's container was removed from outside the harness: no log]\n"
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            fd = open_log(self.log_path)
            with os.fdopen(fd, "wb") as log:
                log.write(logs)
        finally:
            try:
                self.container.remove(force=True)
            except docker.errors.NotFound:
                pass
        return code
