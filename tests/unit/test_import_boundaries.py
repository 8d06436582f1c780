"""The worker runs in team containers with only torch and numpy; the host install needs no torch."""

import subprocess
import sys

import pytest


def imported_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in out.split()}


def test_worker_imports_no_host_libraries():
    pytest.importorskip("torch")
    modules = imported_after("import harness.probe.worker, harness.probe.channel")
    assert not modules & {"click", "pandas", "docker", "rich"}


@pytest.mark.parametrize("module", ["harness.cli", "harness.pipeline", "harness.scoring", "harness.results",
                                    "harness.backends", "harness.tasks", "harness.spec", "harness.submission",
                                    "harness.timekeeper", "harness.measurement", "harness.worker_link",
                                    "harness.config"])
def test_host_modules_do_not_import_torch(module):
    assert "torch" not in imported_after(f"import {module}")
