"""`--backend docker|local|auto`: one rule (backends.docker_unless_local) for a backend and for gc's client."""

from __future__ import annotations

import pytest

from harness.backends import DockerUnavailable, docker_unless_local


def no_engine():
    raise DockerUnavailable("no engine here")


def test_local_never_asks_for_docker():
    asked = []
    assert docker_unless_local("local", lambda: asked.append(1)) is None and asked == []


def test_docker_is_what_docker_makes_or_says_why_not():
    assert docker_unless_local("docker", lambda: "client") == "client"
    with pytest.raises(DockerUnavailable, match="no engine here"):
        docker_unless_local("docker", no_engine, lambda exc: pytest.fail("docker never falls back"))


def test_auto_falls_back_to_local_and_says_why():
    heard = []
    assert docker_unless_local("auto", lambda: "client", heard.append) == "client" and heard == []
    assert docker_unless_local("auto", no_engine, heard.append) is None
    assert [str(exc) for exc in heard] == ["no engine here"]
