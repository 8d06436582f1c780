from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TEAMS = FIXTURES / "teams"


@pytest.fixture
def invoke():
    def run(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return run


@pytest.fixture
def run_args(tmp_path):
    """Options for a quick local run on the fixture data, against the fast fake reference."""
    return ["--spec", FIXTURES / "spec_small.toml", "--data-dir", FIXTURES / "data", "--backend", "local",
            "--reference", TEAMS / "fake_reference", "--cache-dir", tmp_path / "cache", "--out", tmp_path / "out",
            "--timeout", "60"]
