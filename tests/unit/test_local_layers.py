"""The local backend's team venv: layered over the environment the harness runs in, not the base interpreter.

The harness's environment here is a fake one, a venv made in the test from the base interpreter, holding a
package the base interpreter lacks: exactly a user's `python3 -m venv v` with the harness installed in it.
Offline and quick: no pip download, a hand-made wheel installed with --no-index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pip
import pytest

from harness.backends.local import LocalBackend, build_environment, build_key, make_venv
from harness.spec import load_spec
from harness.submission import load_submission

REPO = Path(__file__).resolve().parents[2]
TEAMS = REPO / "tests" / "fixtures" / "teams"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no VIRTUAL_ENV: a process sees only what its interpreter's own sys.path gives it."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **extra}


def python_can_import(python: Path | str, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    return subprocess.run([str(python), "-c", code], env=clean_env()).returncode == 0


def tiny_wheel(folder: Path, name: str) -> Path:
    """A one-module wheel, written by hand so that installing it needs neither network nor build backend."""
    files = {f"{name}/__init__.py": "LAYER = 'team'\n",
             f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
                                            "Tag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for path, text in files.items()]
    files[f"{name}-1.0.dist-info/RECORD"] = "\n".join([*record, f"{name}-1.0.dist-info/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def harness_env(tmp_path_factory) -> Path:
    """A venv from the base interpreter with a package only it has (and pip, linked in, as a user's venv has)."""
    env_dir = tmp_path_factory.mktemp("harness-env") / "env"
    venv.EnvBuilder(symlinks=True, with_pip=False).create(env_dir)
    site_packages = env_dir / "lib" / VERSION / "site-packages"
    (site_packages / "only_in_harness_env").mkdir()
    (site_packages / "only_in_harness_env" / "__init__.py").write_text("WHERE = 'harness env'\n")
    (site_packages / "pip").symlink_to(Path(pip.__file__).parent)
    return env_dir


def make_team_venv_from(harness_env: Path, team_venv: Path) -> None:
    """What LocalBackend.build does, run by the harness env's interpreter (the harness code from this checkout)."""
    code = ("from pathlib import Path; from harness.backends.local import make_venv; "
            f"make_venv(Path({str(team_venv)!r}))")
    subprocess.run([str(harness_env / "bin" / "python"), "-c", code], env=clean_env(PYTHONPATH=str(REPO)),
                   check=True)


def test_the_team_venv_sees_the_harness_environment_not_the_base_interpreter(harness_env, tmp_path):
    assert not python_can_import(BASE_PYTHON, "only_in_harness_env")  # the premise: the base lacks it
    team_venv = tmp_path / "team-venv"
    make_team_venv_from(harness_env, team_venv)
    assert python_can_import(team_venv / "bin" / "python", "only_in_harness_env")
    assert python_can_import(team_venv / "bin" / "python", "harness.probe")  # the probe runs there


def test_setup_installs_into_the_team_layer_only(harness_env, tmp_path):
    team_venv = tmp_path / "team-venv"
    make_team_venv_from(harness_env, team_venv)
    wheel = tiny_wheel(tmp_path, "team_layer_pkg")
    # what a team's setup.sh does: `pip install ...` with the venv's bin first on PATH
    env = clean_env(PATH=f"{team_venv / 'bin'}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(team_venv),
                    PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run(["pip", "install", "-q", "--no-index", "--no-deps", str(wheel)], env=env, check=True)
    assert (team_venv / "lib" / VERSION / "site-packages" / "team_layer_pkg" / "__init__.py").exists()
    assert python_can_import(team_venv / "bin" / "python", "team_layer_pkg")
    assert not python_can_import(harness_env / "bin" / "python", "team_layer_pkg")
    assert not list((harness_env / "lib" / VERSION / "site-packages").glob("team_layer_pkg*"))


def test_the_build_key_covers_interpreter_environment_and_versions():
    here = build_environment()
    assert here["harness"] and here["interpreter"] and here["site_dirs"]
    key = build_key("content", here)
    assert build_key("content", here) == key
    for changed in ({"interpreter": "/usr/bin/python3"}, {"environment": "/elsewhere/venv"},
                    {"site_dirs": ["/elsewhere/site-packages"]}, {"harness": "0.0.0-other"},
                    {"packages": {**here["packages"], "torch": "0.0.1"}}):
        assert build_key("content", {**here, **changed}) != key, changed
    assert build_key("other content", here) != key


def test_a_build_from_another_environment_is_not_reused(tmp_path, monkeypatch):
    spec = load_spec(REPO / "tests" / "fixtures" / "spec_small.toml")
    submission = load_submission(TEAMS / "ok_team", spec)
    backend = LocalBackend(cache_dir=tmp_path / "cache")
    first = backend.build(submission, tmp_path / "work1")
    assert first.ok and not first.cached
    assert backend.build(submission, tmp_path / "work2").cached
    elsewhere = {**build_environment(), "interpreter": "/opt/other/python3"}
    monkeypatch.setattr("harness.backends.local.build_environment", lambda: elsewhere)
    other = backend.build(submission, tmp_path / "work3")
    assert other.ok and not other.cached and other.handle != first.handle


def test_without_pip_anywhere_the_team_gets_a_pip_that_says_so(tmp_path, monkeypatch):
    """A uv venv (no pip) over a Python without ensurepip: setup.sh's `pip` must not reach one further down
    PATH (the user's own), it must fail and say what to do."""
    class NoEnsurepip(venv.EnvBuilder):
        def create(self, env_dir):
            if self.with_pip:
                raise subprocess.CalledProcessError(1, ["python", "-m", "ensurepip"])
            super().create(env_dir)

    monkeypatch.setattr("harness.backends.local.venv.EnvBuilder", NoEnsurepip)
    make_venv(tmp_path / "team-venv", [str(tmp_path)])
    done = subprocess.run([str(tmp_path / "team-venv" / "bin" / "pip"), "install", "x"], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "uv pip install pip" in done.stderr
