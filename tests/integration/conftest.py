"""Docker tests run wherever an engine answers. When one answers, a missing runner image is built (offline:
debootstrap base + wheelhouse, see docker/README.md) rather than skipped; only a machine without an engine
skips them."""

import os
import subprocess
from pathlib import Path

import pytest

from harness.backends.docker import DockerUnavailable, connect

REPO = Path(__file__).resolve().parents[2]
TEST_RUNNER_IMAGE = "lightlm-harness/runner:test"


@pytest.fixture(scope="session")
def docker_client():
    try:
        return connect()
    except DockerUnavailable as exc:
        if os.environ.get("HARNESS_REQUIRE_DOCKER") == "1":
            pytest.fail(f"HARNESS_REQUIRE_DOCKER=1 (the docker CLI reaches an engine) but the SDK cannot: {exc}")
        pytest.skip(f"no Docker engine answers: {exc}")


@pytest.fixture(scope="session")
def runner_image(docker_client):
    """The runner image the tests use, (re)built offline so that it carries this checkout's probe.

    Every step is cached: seconds when nothing changed, a few minutes after a change to the harness, the
    first time about ten (debootstrap, Debian's torch, the wheelhouse).
    """
    build = subprocess.run(["bash", str(REPO / "docker" / "build-runner-offline.sh"), TEST_RUNNER_IMAGE],
                           cwd=REPO, capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"a Docker engine answers but the runner image could not be built:\n"
                    f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    return TEST_RUNNER_IMAGE
