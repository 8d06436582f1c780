"""--rebuild: each backend forgets its cached build of the same content, so the setup script runs again."""

import docker

from harness.backends import Rebuilding, discard_build, make_backend
from harness.backends.docker import DockerBackend, team_image_tag
from harness.spec import load_spec
from harness.submission import Submission

SPEC = load_spec()


def _submission(tmp_path):
    return Submission(team="t", team_dir=tmp_path, setup="setup.sh", predictor="p:P", tasks=("csl",),
                      content_hash="ab" * 32)


class FakeImages:
    def __init__(self, present):
        self.present, self.removed = set(present), []

    def get(self, name):
        if name == "runner":
            return type("Image", (), {"id": "sha256:runner"})()
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)

    def remove(self, name, force=False):
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)
        self.present.remove(name)
        self.removed.append(name)


class FakeClient:
    def __init__(self, present=()):
        self.images = FakeImages(present)

    def info(self):
        return {"Runtimes": {}}


def test_docker_rebuild_removes_the_team_image_of_this_content(tmp_path):
    submission = _submission(tmp_path)
    tag = team_image_tag(submission, SPEC, "sha256:runner")
    client = FakeClient(present=[tag, "lightlm-team/other:1"])
    discard_build(DockerBackend(tmp_path, SPEC, runner_image="runner", client=client), submission)
    assert client.images.removed == [tag] and client.images.present == {"lightlm-team/other:1"}
    discard_build(DockerBackend(tmp_path, SPEC, runner_image="runner", client=client), submission)  # none: fine


def test_local_rebuild_removes_the_built_folder_and_nothing_else(tmp_path):
    backend = make_backend("local", tmp_path / "cache", SPEC, rebuild=True)
    assert isinstance(backend, Rebuilding) and backend.name == "local"
    submission = _submission(tmp_path)
    root = backend.build_root(submission)
    (root / "venv").mkdir(parents=True)
    (root.parent / "other-team").mkdir()
    discard_build(backend.backend, submission)
    assert not root.exists() and (root.parent / "other-team").exists()
