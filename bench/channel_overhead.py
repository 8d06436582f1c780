"""Benchmark: what the worker channel adds to one round trip, against a bare in-process call, same run.

The same trivial predictor answers a 16-example batch (csl-shaped records with Chinese text, the size the
spec times) two ways, interleaved round by round so that machine noise hits both alike:
  (1) bare:    perf_counter(); predict(batch); perf_counter()                    in this process
  (2) channel: the timekeeper's round trip to a real worker subprocess (python -m harness.probe.worker)
               over the Unix socket: send the pre-encoded batch, hold the whole reply
The difference of the medians is the channel's cost per round trip, paid by the team and the reference
alike. Goal (issue 9): at most 50 us.

    python bench/channel_overhead.py [--rounds 30] [--calls 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.probe import channel
from harness.worker_link import WorkerLink

REPO = Path(__file__).resolve().parent.parent
TEAM = REPO / "tests" / "fixtures" / "teams" / "ok_team"
# Every example's text is its own string (as in real data), so the request's encoding cannot share them.
BATCH = [{"id": i, "abst": f"第{i}篇：" + "本文提出一种轻量级中文预训练模型，在多个任务上取得了良好的效果。" * 4,
          "keyword": ["预训练", "中文", f"模型{i}"]} for i in range(16)]


def answer(example):
    return {"id": example["id"], "label": "0"}


def bare_seconds(calls: int) -> list[float]:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        [answer(e) for e in BATCH]
        seconds.append(time.perf_counter() - start)
    return seconds


def channel_seconds(link: WorkerLink, frame: bytes, calls: int) -> list[float]:
    return [link.round_trip(frame)[0] for _ in range(calls)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=200, help="round trips per round and side")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="harness-bench-"))
    server, path = channel.listen(folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen([sys.executable, "-m", "harness.probe.worker", str(path)], env=env, cwd=folder)
    try:
        link = WorkerLink.accept("bench", server, lambda: worker.poll() is None, time.monotonic() + 120)
        link.call("load", task="csl", device="cpu", options={}, seed=0, precision="free", threads=1,
                  team_dir=str(TEAM), predictor="predictor:Predictor")
        frame = channel.request_body({"op": "predict", "batch": BATCH})
        channel_seconds(link, frame, args.calls)            # warm-up
        bare_medians, channel_medians = [], []
        for _ in range(args.rounds):
            bare_medians.append(statistics.median(bare_seconds(args.calls)))
            channel_medians.append(statistics.median(channel_seconds(link, frame, args.calls)))
        link.stop()
    finally:
        worker.kill()
        worker.wait()
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
    bare, via = statistics.median(bare_medians) * 1e6, statistics.median(channel_medians) * 1e6
    print(f"16-example batch, {len(frame)} bytes sent; median of {args.rounds} rounds x {args.calls} calls")
    print(f"{'bare in-process call':>24}: {bare:8.1f} us")
    print(f"{'round trip over channel':>24}: {via:8.1f} us")
    print(f"{'added by the channel':>24}: {via - bare:8.1f} us   (goal: <= 50 us)")


if __name__ == "__main__":
    main()
