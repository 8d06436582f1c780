"""python -m harness.probe.reaped COMMAND [ARG ...]: run COMMAND as the subreaper of everything it starts, and
when it exits, kill whatever it left behind.

The local backend runs a team's setup.sh through this. A setup script that leaves a process running after it
succeeds (a background job, or one that daemonized itself with setsid and a double fork, which leaves its
process group and its parent) would otherwise burn the box's CPU while teams are timed, frozen by nobody. As
the subreaper (PR_SET_CHILD_SUBREAPER) this process adopts every orphan under it, so when COMMAND exits every
process it started is still a descendant here, and is killed (forkserver.end_descendants) and reaped. Exits
with COMMAND's code. Standard library only. Where the kernel refuses a subreaper (not Linux), it says so on
stderr (the build log): what daemonized then goes to init, out of reach.
"""

from __future__ import annotations

import os
import subprocess
import sys

from harness.probe.forkserver import adopt_orphans, end_descendants


def reap_all() -> None:
    """Collect the exit status of every child that ended (nothing is left a zombie under this process)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str] | None = None) -> int:
    command = sys.argv[1:] if argv is None else argv
    if not command:
        print("usage: python -m harness.probe.reaped COMMAND [ARG ...]", file=sys.stderr)
        return 2
    if not adopt_orphans():
        print("reaped: cannot become the subreaper here: a process the command daemonizes escapes the kill",
              file=sys.stderr, flush=True)
    try:
        code = subprocess.call(command)
    finally:
        end_descendants()
        reap_all()
    return code


if __name__ == "__main__":
    sys.exit(main())
