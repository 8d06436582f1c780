"""The local backend: no Docker. For participants' self-checks, CI, and machines where Docker is absent.

The team folder is copied into a work folder keyed by its content hash (so setup.sh may write there without
touching the original), a virtual environment that can see the system's torch is made for it, and setup.sh
runs inside that environment. The probe then runs in a subprocess with a wall-clock timeout; the whole
process group is killed when it expires. There is no network or filesystem isolation: use Docker for that.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

from harness.backends.base import Built, ProbeRun, log_tail, probe_outcome
from harness.probe.manifest import RunManifest
from harness.submission import IGNORED_PARTS, Submission

READY_MARK = ".harness-built"


def _env_with_venv(venv_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(venv_dir)
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_logged(command: list[str], cwd: Path, env: dict[str, str], log_path: Path, timeout_s: float
               ) -> tuple[int | None, bool]:
    """Run a command in its own process group with output to `log_path`; (exit code, timed out)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return process.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None, True
        except BaseException:  # Ctrl-C: never leave the team's processes behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise


def make_venv(venv_dir: Path) -> None:
    """A venv that sees the system's packages (torch), with a `pip` that installs into the venv.

    Seeding pip into every venv takes seconds; the system's pip module run by the venv's interpreter
    installs into the venv just the same, so `pip` is a two-line wrapper around `python -m pip`.
    """
    venv.EnvBuilder(system_site_packages=True, with_pip=False, symlinks=True).create(venv_dir)
    for name in ("pip", "pip3"):
        wrapper = venv_dir / "bin" / name
        wrapper.write_text(f'#!/bin/sh\nexec "{venv_dir / "bin" / "python"}" -m pip "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)


class LocalBackend:
    name = "local"

    def __init__(self, cache_dir: Path, setup_timeout_s: float = 1800):
        self.cache_dir = Path(cache_dir)
        self.setup_timeout_s = setup_timeout_s

    def build(self, submission: Submission, work_dir: Path) -> Built:
        """Copy the team, make its venv and run its setup script once per content hash."""
        root = self.cache_dir / "local" / f"{submission.team}-{submission.content_hash[:16]}"
        team_copy, venv_dir = root / "team", root / "venv"
        log_path = work_dir / "build.log"
        python = venv_dir / "bin" / "python"
        if (root / READY_MARK).exists():
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(f"cached build {root}\n", encoding="utf-8")
            return Built(True, str(python), str(team_copy), log_path, cached=True)
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(submission.team_dir, team_copy, ignore=shutil.ignore_patterns(*IGNORED_PARTS))
        make_venv(venv_dir)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ ./{submission.setup}  (in {team_copy})\n", encoding="utf-8")
        code, timed_out = run_logged([str(team_copy / submission.setup)], team_copy, _env_with_venv(venv_dir),
                                     log_path, self.setup_timeout_s)
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

    def run(self, built: Built, manifest: RunManifest, out_dir: Path, timeout_s: float, log_path: Path
            ) -> ProbeRun:
        out_dir, log_path = out_dir.resolve(), log_path.resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest_path = manifest.write(out_dir / "run.json")
        env = _env_with_venv(Path(built.handle).parent.parent) if built.handle != sys.executable else dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        command = [built.handle, "-m", "harness.probe", str(manifest_path), str(out_dir)]
        code, timed_out = run_logged(command, out_dir, env, log_path, timeout_s)
        return probe_outcome(code, timed_out, timeout_s, out_dir, log_path)
