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


def pytest_configure(config):
    """xdist's loadgroup suffixes node ids with their group; pytest 9 keeps node ids where xdist 3.8 cannot
    (the suffix is silently lost), and Docker tests spread over both workers then build the runner image
    twice at once. Refuse that combination rather than run a different suite than intended."""
    if config.getoption("dist", "no") != "loadgroup":
        return
    import importlib.metadata

    pytest_major = int(pytest.__version__.split(".")[0])
    xdist_version = tuple(int(part) for part in importlib.metadata.version("pytest-xdist").split(".")[:2])
    if pytest_major >= 9 and xdist_version <= (3, 8):
        raise pytest.UsageError(f"pytest {pytest.__version__} with pytest-xdist {'.'.join(map(str, xdist_version))}"
                                " loses --dist loadgroup's groups: pip install 'pytest<9' (the dev extra pins it)")


def _uses_a_shared_fixture(item) -> bool:
    """Whether a module- or class-scoped fixture serves this test: each xdist worker would build its own."""
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(defs and defs[-1].scope in ("module", "class", "package") for defs in definitions.values())


def pytest_itemcollected(item):
    """Groups are marked as each test is collected, before any collection_modifyitems hook: xdist's own
    reads the xdist_group markers there, and it runs before a conftest's."""
    if item.get_closest_marker("docker") is not None:
        item.add_marker(pytest.mark.xdist_group("docker"))
    elif item.get_closest_marker("xdist_group") is None and _uses_a_shared_fixture(item):
        # its module's tests on one worker, the fixture built once (a group the module names already does it)
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_collection_modifyitems(config, items):
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
