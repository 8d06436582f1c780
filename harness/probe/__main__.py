"""python -m harness.probe RUN_MANIFEST OUT_DIR: measure one run; exit 0 when every task succeeded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.probe.manifest import RunManifest
from harness.probe.runner import run_probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.probe", description=__doc__)
    parser.add_argument("manifest", type=Path, help="run manifest JSON written by the host")
    parser.add_argument("out_dir", type=Path, help="folder for measurements.json and <task>_predict.json")
    args = parser.parse_args(argv)
    record = run_probe(RunManifest.read(args.manifest), args.out_dir)
    if not record["ok"]:
        print(f"probe: {record['error']}", file=sys.stderr)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
