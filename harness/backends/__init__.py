"""Backends: where a team's code is built and run. One module per backend, registered here."""

from __future__ import annotations

from pathlib import Path

from harness.backends.base import Backend, Built, WorkerHandle
from harness.backends.docker import RUNNER_IMAGE, DockerBackend, DockerUnavailable
from harness.backends.local import LocalBackend
from harness.slots import Slot
from harness.spec import Spec
from harness.submission import Submission

BACKENDS = ("docker", "local")


def discard_build(backend: Backend, submission: Submission) -> None:
    """Forget the cached build of this content, so that the next build runs the setup script again."""
    backend.discard(submission)


class Rebuilding:
    """A backend that builds every team afresh (--rebuild) and otherwise is the backend it wraps."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.name = backend.name

    def build(self, submission: Submission, work_dir: Path) -> Built:
        discard_build(self.backend, submission)
        return self.backend.build(submission, work_dir)

    def __getattr__(self, attribute: str):
        return getattr(self.backend, attribute)


def make_backend(name: str, cache_dir: Path, spec: Spec, runner_image: str = RUNNER_IMAGE, rebuild: bool = False,
                 slot: Slot | None = None) -> Backend:
    """The backend called `name`, configured from the spec's sandbox settings; `rebuild` ignores cached builds.
    `slot`: one box slot of several on this node (harness.slots): Docker's workers and builds stay inside its
    CPUs and GPU; the local backend's workers inherit the caller's pinning (slots.pin_process).

    "auto" means docker when an engine answers and the runner image is there, else local: what a
    participant's self-check wants on a laptop without Docker.
    """
    if rebuild:
        return Rebuilding(make_backend(name, cache_dir, spec, runner_image, slot=slot))
    if name == "local":
        return LocalBackend(cache_dir=Path(cache_dir), setup_timeout_s=spec.build.timeout_s)
    if name == "docker":
        backend = DockerBackend(cache_dir=Path(cache_dir), spec=spec, runner_image=runner_image, slot=slot)
        backend.runner_id()  # fail now, with the build command, rather than after preparing everything
        return backend
    if name == "auto":
        try:
            return make_backend("docker", cache_dir, spec, runner_image, slot=slot)
        except DockerUnavailable:
            return make_backend("local", cache_dir, spec)
    raise ValueError(f"unknown backend {name!r}; known: auto, {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Built", "DockerUnavailable", "Rebuilding", "WorkerHandle", "discard_build",
           "make_backend"]
