"""Suite-wide: a closing line that splits the suite's wall time by marker (docker, slow, the rest), so a CI log
shows which group grew, beside pytest's own --durations list of the slowest tests."""

import time
from collections import defaultdict

_seconds_by_group = defaultdict(float)
_count_by_group = defaultdict(int)


def _group(item):
    for marker in ("docker", "gpu", "slow"):
        if item.get_closest_marker(marker) is not None:
            return marker
    return "other"


def pytest_runtest_protocol(item, nextitem):
    item.stash_started = time.perf_counter()


def pytest_runtest_makereport(item, call):
    if call.when == "teardown" and hasattr(item, "stash_started"):
        group = _group(item)
        _seconds_by_group[group] += time.perf_counter() - item.stash_started
        _count_by_group[group] += 1


def pytest_terminal_summary(terminalreporter):
    if not _seconds_by_group:
        return
    parts = [f"{group} {_count_by_group[group]} tests {seconds:.0f} s"
             for group, seconds in sorted(_seconds_by_group.items(), key=lambda kv: -kv[1])]
    terminalreporter.write_line("time by marker (setup + call + teardown): " + "; ".join(parts))
