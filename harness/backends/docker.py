"""The Docker backend: the production path. Team code is untrusted, so it runs isolated.

Build: a team image FROM the runner image, the team folder copied in and its setup script run at build time,
tagged by the content hash of the team folder, the harness version, the spec and the runner image, so an
unchanged team is never rebuilt. Run: no network, read-only root filesystem with a tmpfs /tmp, inputs
mounted read-only, the output folder as the only writable mount, all capabilities dropped,
no-new-privileges, a non-root user, pids/memory/shm/CPU limits from the spec, GPUs when the box has them,
and a wall-clock timeout after which the container is killed. Containers are always removed.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from harness import __version__
from harness.backends.base import Built, ProbeRun, log_tail, probe_outcome
from harness.probe.manifest import RunManifest
from harness.spec import Spec
from harness.submission import IGNORED_PARTS, Submission

RUNNER_IMAGE = "lightlm-harness/runner:latest"
RUNNER_USER = "10001:10001"
TEAM_LABEL = "lightlm-harness.team"
CONTAINER_LABEL = "lightlm-harness.run"
TEAM_DIR_IN_IMAGE = "/team"
REFERENCE_DIR_IN_IMAGE = "/opt/harness/baselines/bert_reference"
INPUTS_IN_CONTAINER, OUT_IN_CONTAINER = "/inputs", "/out"

# setup.sh runs as the runner user, who owns the image's venv (so `pip install` works) but not the system.
TEAM_DOCKERFILE = """FROM {runner}
LABEL {label}="{team}"
COPY --chown={user} team {team_dir}
USER {user}
WORKDIR {team_dir}
RUN ./{setup}
"""


class DockerUnavailable(RuntimeError):
    """No engine answers, or the runner image is missing; the message says what to do."""


def connect():
    """A docker client whose engine answers, or DockerUnavailable saying how to get one."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
        return client
    except Exception as exc:
        raise DockerUnavailable(f"no Docker engine answers ({exc}); start Docker, or use --backend local") from exc


def team_image_tag(submission: Submission, spec: Spec, runner_id: str) -> str:
    key = "\0".join([submission.content_hash, __version__, spec.sha256, runner_id])
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in submission.team.lower()).strip(".-") or "team"
    return f"lightlm-team/{name}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


class DockerBackend:
    name = "docker"

    def __init__(self, cache_dir: Path, spec: Spec, runner_image: str = RUNNER_IMAGE, gpus: bool | None = None,
                 client=None):
        self.spec = spec
        self.runner_image = runner_image
        self.client = client or connect()
        self.gpus = gpus if gpus is not None else "nvidia" in (self.client.info().get("Runtimes") or {})

    def runner_id(self) -> str:
        import docker

        try:
            return self.client.images.get(self.runner_image).id
        except docker.errors.ImageNotFound:
            raise DockerUnavailable(
                f"runner image {self.runner_image} not found: build it with "
                f"`docker build -f Dockerfile.runner -t {self.runner_image} .` (see docker/README.md "
                "for machines without a registry)") from None

    def build(self, submission: Submission, work_dir: Path) -> Built:
        """Build (or reuse) the team image; a failed build is the team's, reported with its log."""
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
        with tempfile.TemporaryDirectory(prefix="harness-build-") as context:
            shutil.copytree(submission.team_dir, Path(context) / "team",
                            ignore=shutil.ignore_patterns(*IGNORED_PARTS))
            (Path(context) / "Dockerfile").write_text(TEAM_DOCKERFILE.format(
                runner=self.runner_image, label=TEAM_LABEL, team=submission.team, team_dir=TEAM_DIR_IN_IMAGE,
                setup=submission.setup, user=RUNNER_USER), encoding="utf-8")
            error = self._stream_build(context, tag, log_path)
        if error:
            self._prune_failed_build()
            tail = log_tail(log_path, 3).replace("\n", " | ")
            return Built(False, tag, TEAM_DIR_IN_IMAGE, log_path, error=f"image build failed: {error} | {tail}")
        return Built(True, tag, TEAM_DIR_IN_IMAGE, log_path)

    def _stream_build(self, context: str, tag: str, log_path: Path) -> str:
        """Run the build, writing its whole log; returns the engine's error, or '' on success."""
        error = ""
        with log_path.open("w", encoding="utf-8") as log:
            for chunk in self.client.api.build(path=context, tag=tag, rm=True, forcerm=True, decode=True):
                if "stream" in chunk:
                    log.write(chunk["stream"])
                if "error" in chunk:
                    error = chunk["error"].strip()
                    log.write(f"ERROR: {error}\n")
        return error

    def _prune_failed_build(self) -> None:
        """A failed build leaves untagged layers carrying our label: remove them."""
        self.client.images.prune(filters={"dangling": True, "label": TEAM_LABEL})

    def build_reference(self, reference_dir: Path, work_dir: Path) -> Built:
        """The reference runs in the runner image itself: no team code in it."""
        work_dir.mkdir(parents=True, exist_ok=True)
        self.runner_id()
        return Built(True, self.runner_image, REFERENCE_DIR_IN_IMAGE, work_dir / "build.log", cached=True)

    def container_options(self, inputs_dir: Path, out_dir: Path) -> dict:
        """Everything that isolates a run, in one place (the integration tests check each of them)."""
        import docker

        box = self.spec.sandbox
        options = dict(
            network_mode="none", read_only=True, tmpfs={"/tmp": "rw,exec,nosuid,nodev,size=1g,mode=1777"},
            cap_drop=["ALL"], security_opt=["no-new-privileges"], user=RUNNER_USER,
            pids_limit=box.pids_limit, mem_limit=box.memory, memswap_limit=box.memory, shm_size=box.shm_size,
            nano_cpus=int(box.cpus * 1e9), environment={"HOME": "/tmp", "PYTHONUNBUFFERED": "1"},
            volumes={str(inputs_dir): {"bind": INPUTS_IN_CONTAINER, "mode": "ro"},
                     str(out_dir): {"bind": OUT_IN_CONTAINER, "mode": "rw"}},
            labels={CONTAINER_LABEL: "probe"}, detach=True,
        )
        if self.gpus:
            options["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return options

    def run(self, built: Built, manifest: RunManifest, out_dir: Path, timeout_s: float, log_path: Path
            ) -> ProbeRun:
        out_dir, inputs_dir = out_dir.resolve(), Path(manifest.inputs_dir).resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        out_dir.chmod(0o777)  # the container's non-root user writes here, and only here
        inside = replace(manifest, team_dir=built.team_dir, inputs_dir=INPUTS_IN_CONTAINER)
        inside.write(out_dir / "run.json")
        command = ["python3", "-m", "harness.probe", f"{OUT_IN_CONTAINER}/run.json", OUT_IN_CONTAINER]
        container = self.client.containers.run(built.handle, command, **self.container_options(inputs_dir, out_dir))
        timed_out, exit_code = False, None
        try:
            try:
                exit_code = container.wait(timeout=timeout_s).get("StatusCode")
            except Exception:  # the engine's read timeout: the run is past its wall-clock limit
                timed_out = True
                container.kill()
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_bytes(container.logs(stdout=True, stderr=True))
        finally:
            container.remove(force=True)
        return probe_outcome(exit_code, timed_out, timeout_s, out_dir, log_path)
