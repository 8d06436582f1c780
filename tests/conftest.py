"""Suite-wide settings.

- Docker tests share one engine and build on each other's images: under pytest-xdist they all go to one
  worker (the xdist_group "docker"), in order and before anything else, while the other worker runs the rest
  of the suite beside them.
  Tests served by a module-scoped fixture stay together on one worker too, so the fixture is built once.
- A closing line splits the suite's time by marker (docker, gpu, slow, the rest), beside pytest's own
  --durations list, so a CI log shows which group grew. It adds up the reports' durations (setup, call and
  teardown), which reach the main process under xdist too: with two workers the sum exceeds the wall time.
"""

from collections import defaultdict

import pytest

GROUPS = ("docker", "gpu", "slow")
_seconds_by_group = defaultdict(float)
_tests_by_group = defaultdict(set)


def _uses_a_shared_fixture(item) -> bool:
    """Whether a module- or class-scoped fixture serves this test: each xdist worker would build its own."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(defs and defs[-1].scope in ("module", "class", "package") for defs in definitions.values())


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("docker") is not None:
            item.add_marker(pytest.mark.xdist_group("docker"))
        elif _uses_a_shared_fixture(item):      # its module's tests on one worker: the fixture is built once
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # the Docker tests first: the group is the longest (the runner image is built before its first test), so
    # its worker must start on it at once rather than after its share of the other tests
    items.sort(key=lambda item: item.get_closest_marker("docker") is None)


def pytest_runtest_logreport(report):
    group = next((g for g in GROUPS if g in report.keywords), "other")
    _seconds_by_group[group] += report.duration
    _tests_by_group[group].add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if not _seconds_by_group:
        return
    parts = [f"{group} {len(_tests_by_group[group])} tests {seconds:.0f} s"
             for group, seconds in sorted(_seconds_by_group.items(), key=lambda kv: -kv[1])]
    terminalreporter.write_line("time by marker (setup + call + teardown, summed over workers): " + "; ".join(parts))
