"""Docker tests run wherever an engine answers. When one answers, a missing runner image is built (offline:
debootstrap base + wheelhouse, see runner-image/README.md) rather than skipped; only a machine without an engine
skips them."""

import fcntl
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from harness.backends.docker import DockerUnavailable, connect

REPO = Path(__file__).resolve().parents[2]
# One tag per checkout (unless HARNESS_TEST_RUNNER_IMAGE names one): several checkouts testing against one
# engine must not rebuild each other's runner image under the team builds that run FROM it.
TEST_RUNNER_IMAGE = os.environ.get("HARNESS_TEST_RUNNER_IMAGE",
                                   f"lightlm-harness/runner:test-{hashlib.sha256(str(REPO).encode()).hexdigest()[:8]}")


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
    # one build at a time on this machine (another xdist worker, another checkout): the offline base's
    # debootstrap and apt steps share one package cache and its lock
    lock_path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lightlm-harness" / "runner-build.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = subprocess.run(["bash", str(REPO / "runner-image" / "build-runner-offline.sh"), TEST_RUNNER_IMAGE],
                               cwd=REPO, capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"a Docker engine answers but the runner image could not be built:\n"
                    f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    return TEST_RUNNER_IMAGE
