"""Backends: where a team's code is built and run. One module per backend, registered here."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

from harness.backends.base import Backend, Built, WorkerHandle
from harness.backends.docker import RUNNER_IMAGE, DockerBackend, DockerUnavailable
from harness.backends.local import LocalBackend
from harness.slots import Slot
from harness.spec import Spec
from harness.submission import Submission

BACKENDS = ("docker", "local")
T = TypeVar("T")


def docker_unless_local(name: str, with_docker: Callable[[], T],
                        falling_back: Callable[[DockerUnavailable], None] = lambda exc: None) -> T | None:
    """The one rule of `--backend docker|local|auto`, for whatever needs Docker (a backend, an engine client):
    docker needs it (DockerUnavailable, saying how to fix it, when it does not answer); local never asks for
    it (None); auto is docker when `with_docker()` succeeds, else None, and `falling_back` hears why."""
    if name == "local":
        return None
    try:
        return with_docker()
    except DockerUnavailable as exc:
        if name != "auto":
            raise
        falling_back(exc)
        return None


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
    if name not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {name!r}; known: auto, {', '.join(BACKENDS)}")

    def docker_backend() -> DockerBackend:
        backend = DockerBackend(cache_dir=Path(cache_dir), spec=spec, runner_image=runner_image, slot=slot)
        backend.runner_id()  # fail now, with the build command, rather than after preparing everything
        return backend

    docker = docker_unless_local(name, docker_backend)
    return docker if docker is not None else LocalBackend(cache_dir=Path(cache_dir),
                                                          setup_timeout_s=spec.build.timeout_s)


__all__ = ["BACKENDS", "Backend", "Built", "DockerUnavailable", "Rebuilding", "WorkerHandle", "discard_build",
           "docker_unless_local", "make_backend"]
