"""The GPU day: one bounded command that answers every GPU question, and leaves its report behind.

On a machine lent with a GPU (torch, transformers, onnxruntime, pandas, click, psutil and nvidia-ml-py in
python3; no Docker, no network), from a copy of the repository, in one command of at most 9 minutes:

    python3 bench/gpu_day.py --out bench/results/gpu_day --budget-s 480 [--data-dir ../shared/data/clue]

The report lands in OUT/gpu_day.md (one readable report, every figure with its conditions) and
OUT/gpu_day.json (the same data), and is printed. It plans within --budget-s (default 480 s) and never
overruns it: each section says what it expects to cost, runs only if that fits in what is left (and is
cut at what is left), and otherwise says "skipped: why". In order of importance:
  1 box          harness doctor, the GPU (model, driver, CUDA, clocks) and the library versions
  2 reference    its precision verified fp32-strict right before timing; its time per task under
                 fp32-strict and under TF32, for the record (TF32 applies on a GPU only)
  3 teams        every bundled team through the real pipeline (`harness run --backend local`): speedup,
                 95% interval and half-width, verdict, parameters, flags
  4 repeats      the demo team and roberta_tiny_team again (3 runs each, 5 if the budget allows): do the
                 intervals overlap, and the spread
  5 time split   where the time goes per task and side: host, model, end to end (bench/example_teams.py),
                 and the model-only speedup
  6 channel      the channel's overhead per round trip against a bare call (bench/channel_overhead.py)
  7 memory       resident growth, peak and device memory (NVML) of each team and the reference, against
                 the slack the harness assumes (from section 3's records)
  8 freezing     what freezing the side not being timed costs per window (from section 3's records), and
                 the reference's timed passes beside bench/teams/idle_saboteur_team (busy on the device
                 whenever it is not inside predict()) against its own warm-up windows
The CPU dry run keeps it from rotting: `python bench/gpu_day.py --device cpu --quick --out DIR` (under 3
minutes on a 2-core box: the demo team only, two examples a task, the test suite's spec and fast fake
reference; a 170 s budget).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))        # runs from a plain copy of the repository, installed or not
BASELINES = REPO / "baselines"
TEAMS = ("demo_team", "roberta_tiny_team", "albert_tiny_team", "onnx_team")
REPEATED = ("demo_team", "roberta_tiny_team")
FAKE_REFERENCE = REPO / "tests" / "fixtures" / "teams" / "fake_reference"
SECTIONS = ("box", "reference", "teams", "repeats", "time_split", "channel", "memory", "freezing")
RESERVE_S = 5.0          # kept back for writing the report


class Skip(Exception):
    """A section that cannot run here or now; the message says why."""


class Budget:
    def __init__(self, total_s: float):
        self.total_s, self.started = total_s, time.monotonic()

    def left(self) -> float:
        return self.total_s - RESERVE_S - (time.monotonic() - self.started)

    def need(self, seconds: float, what: str) -> None:
        if seconds > self.left():
            raise Skip(f"{what} needs about {seconds:.0f} s, {max(0.0, self.left()):.0f} s of the budget left")

    def run(self, command: list[str], estimate_s: float, what: str) -> subprocess.CompletedProcess:
        """A command expected to take `estimate_s`, cut at what is left of the budget."""
        self.need(estimate_s, what)
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=max(1.0, self.left()))
        except subprocess.TimeoutExpired:
            raise Skip(f"{what} was cut at the end of the budget") from None


class Day:
    """Settings and what each section found, shared by the sections."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.budget = args, Budget(args.budget_s)
        self.device = args.device if args.device != "auto" else ("cuda" if cuda_available() else "cpu")
        self.out = args.out.resolve()
        self.data: dict[str, Any] = {"settings": {"device": self.device, "budget_s": args.budget_s,
                                                  "quick": args.quick, "data_dir": str(args.data_dir),
                                                  "reference": str(args.reference or "bundled BERT-base"),
                                                  "max_examples": args.max_examples}}
        self.runs: dict[str, list[dict[str, Any]]] = {}       # team -> pipeline runs (section 3, 4)
        self.run_estimate_s = 60.0 if args.quick else 240.0   # until the first run says otherwise

    def harness_run(self, team: str, index: int, folder: Path | None = None) -> dict[str, Any]:
        """One team (a bundled one, or `folder`) through the real CLI on the local backend, summarized."""
        out = self.out / "runs" / f"{team}-{index}"
        command = [sys.executable, "-m", "harness.cli", "run", str(folder or BASELINES / team), "--backend", "local",
                   "--device", self.device, "--out", str(out), "--data-dir", str(self.args.data_dir),
                   "--cache-dir", str(self.out / "cache")]
        if self.args.max_examples:
            command += ["--max-examples", str(self.args.max_examples)]
        if self.args.spec:
            command += ["--spec", str(self.args.spec)]
        if self.args.reference:
            command += ["--reference", str(self.args.reference)]
        started = time.monotonic()
        done = self.budget.run(command, self.run_estimate_s, f"a run of {team}")
        wall = time.monotonic() - started
        self.run_estimate_s = max(wall, 1.0) * 1.2
        records = sorted(out.glob("*/result.json"))          # the folder is the team's declared name
        if not records:
            return {"team": team, "status": "no result", "error": " ".join((done.stderr or done.stdout).split())[-300:],
                    "wall_s": wall}
        return summarize_run(json.loads(records[0].read_text(encoding="utf-8")), wall)


def cuda_available() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def summarize_run(record: dict[str, Any], wall_s: float) -> dict[str, Any]:
    score = record.get("score") or {}
    tasks = {}
    for name, info in (record.get("tasks") or {}).items():
        timing = info.get("timing") or {}
        tasks[name] = {key: timing.get(key) for key in (
            "time_s", "memory_growth_bytes", "memory_peak_bytes", "unexplained_resident_bytes",
            "unexplained_peak_bytes", "explained_bytes", "device_memory_bytes", "freeze_s_per_window",
            "frozen_windows", "freeze_s", "first_sight_block", "caching_audit", "warmup_settled")}
        tasks[name]["params"] = info.get("params")
    reference = {name: {**{key: info.get(key) for key in ("time_s", "memory_growth_bytes", "memory_peak_bytes",
                                                          "device_memory_bytes", "params")},
                        "warmup_window_s": statistics.median(info["warmup_windows_s"][-3:])
                        if info.get("warmup_windows_s") else None}
                 for name, info in (record.get("reference") or {}).items()}
    speedup, low, high = score.get("speedup"), score.get("speedup_low"), score.get("speedup_high")
    return {"team": record.get("team"), "status": record.get("status"), "error": record.get("error"),
            "speedup": speedup, "low": low, "high": high,
            "half_width": (high - low) / 2 / speedup if speedup and low is not None and high is not None else None,
            "verdict": score.get("speed_verdict"), "params": score.get("S"), "T_s": score.get("T"),
            "T_bert_s": score.get("T_bert"), "flags": record.get("flags") or [], "tasks": tasks,
            "reference": reference, "wall_s": wall_s, "device": (record.get("environment") or {}).get("device")}


# ---- the sections: each returns (data, markdown lines) or raises Skip -----------------------------------

def section_box(day: Day) -> tuple[Any, list[str]]:
    from harness.doctor import diagnose
    from harness.gpu import gpu_snapshot

    findings = [{"what": f.what, "ok": f.ok, "detail": f.detail, "fix": f.fix} for f in diagnose()]
    versions = {}
    for module in ("torch", "transformers", "onnxruntime", "numpy", "pandas"):
        try:
            versions[module] = __import__(module).__version__
        except Exception as exc:
            versions[module] = f"missing ({type(exc).__name__})"
    try:
        import torch
        versions["torch_cuda"] = torch.version.cuda
        versions["cudnn"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except Exception:
        pass
    data = {"doctor": findings, "gpus": gpu_snapshot(), "versions": versions, "python": sys.version.split()[0],
            "platform": platform.platform(), "cpus": os.cpu_count()}
    lines = ["| check | ok | detail |", "|---|---|---|"]
    lines += [f"| {f['what']} | {'yes' if f['ok'] else 'NO'} | {f['detail']} |" for f in findings]
    lines.append("")
    for gpu in data["gpus"]:
        lines.append(f"- GPU {gpu['index']}: {gpu['name']}, driver {gpu['driver']}, CUDA driver {gpu['cuda_driver']}, "
                     f"SM {gpu['sm_clock_mhz']} MHz, memory {gpu['mem_clock_mhz']} MHz, {gpu['temperature_c']} C, "
                     f"{gpu['power_w']:.0f} W")
    if not data["gpus"]:
        lines.append("- no GPU seen by NVML")
    lines.append(f"- {data['cpus']} CPUs, {data['platform']}, Python {data['python']}; "
                 + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return data, lines


def section_reference(day: Day) -> tuple[Any, list[str]]:
    """The reference in this process: fp32-strict verified, then timed per task, strict and (GPU) TF32."""
    day.budget.need(25 if day.args.quick else 90, "timing the reference in two precisions")
    import torch

    from harness.probe import STRICT_FP32
    from harness.probe.worker import read_precision, set_precision
    from harness.pipeline import prepare_inputs
    from harness.spec import load_spec

    sys.path.insert(0, str(BASELINES / "bert_reference"))
    try:
        from predictor import Predictor
    finally:
        sys.path.remove(str(BASELINES / "bert_reference"))
    spec = load_spec(day.args.spec)
    inputs = prepare_inputs(spec, day.args.data_dir, day.args.max_examples or None).inputs
    calls = 1 if day.args.quick else 5
    tasks = spec.task_names[:1] if day.args.quick else spec.task_names
    modes = ["fp32-strict"] + (["tf32"] if day.device == "cuda" else [])
    results: dict[str, dict[str, float]] = {}
    verified = {}
    for task in tasks:
        settings = spec.task(task)
        predictor = Predictor(task, day.device, max_seq_length=settings.max_seq_length,
                              padding=spec.reference.padding, doc_stride=spec.reference.doc_stride)
        batch = inputs[task][:settings.batch_size]
        for mode in modes:
            set_precision("fp32-strict")
            if mode == "tf32":
                torch.backends.cuda.matmul.allow_tf32 = True
                torch.backends.cudnn.allow_tf32 = True
            else:
                state = read_precision()
                verified[task] = all(state.get(k) == v for k, v in STRICT_FP32.items())
            predictor.predict(batch)                     # warm
            seconds = []
            for _ in range(calls):
                sync(day.device)
                start = time.perf_counter()
                predictor.predict(batch)
                sync(day.device)
                seconds.append(time.perf_counter() - start)
            results.setdefault(task, {})[mode] = statistics.median(seconds)
        del predictor
        set_precision("fp32-strict")
    lines = [f"Median of {calls} call(s) of one batch (the spec's batch size) per task on {day.device}, "
             "predict() end to end, after one warm call.", "",
             "| task | fp32-strict verified | fp32-strict s | TF32 s | strict / TF32 |", "|---|---|---|---|---|"]
    for task, times in results.items():
        strict, tf32 = times["fp32-strict"], times.get("tf32")
        ratio = f"{strict / tf32:.2f}x" if tf32 else "n/a"
        lines.append(f"| {task} | {'yes' if verified.get(task) else 'NO'} | {strict:.4f} | "
                     f"{f'{tf32:.4f}' if tf32 else 'n/a (CPU)'} | {ratio} |")
    if day.args.quick:
        lines.append("")
        lines.append(f"(quick: {tasks[0]} only)")
    return {"per_task_s": results, "fp32_strict_verified": verified, "calls": calls}, lines


def sync(device: str) -> None:
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def run_lines(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| team | run | status | speedup | 95% interval | half-width | verdict | params | wall s | flags |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, run in enumerate(runs, 1):
        if run.get("speedup") is None:
            lines.append(f"| {run['team']} | {i} | {run['status']} | - | - | - | - | - | {run['wall_s']:.0f} | "
                         f"{(run.get('error') or '')[:120]} |")
            continue
        flags = "; ".join(f for f in run["flags"] if not f.startswith("timed on CPU"))[:200] or "none"
        lines.append(f"| {run['team']} | {i} | {run['status']} | {run['speedup']:.2f}x | [{run['low']:.2f}, "
                     f"{run['high']:.2f}] | {run['half_width']:.1%} | {run['verdict']} | {run['params']:,} | "
                     f"{run['wall_s']:.0f} | {flags} |")
    return lines


def section_teams(day: Day) -> tuple[Any, list[str]]:
    teams = TEAMS[:1] if day.args.quick else TEAMS
    skipped = []
    for team in teams:
        try:
            day.runs[team] = [day.harness_run(team, 1)]
        except Skip as exc:
            skipped.append(f"{team}: {exc}")
    if not day.runs:
        raise Skip("; ".join(skipped))
    runs = [r for team in teams for r in day.runs.get(team, [])]
    lines = [f"Each team through `harness run --backend local --device {day.device}` against "
             f"{day.args.reference or 'BERT-base'}.", "", *run_lines(runs)]
    lines += [f"- skipped: {s}" for s in skipped]
    if day.args.quick:
        lines.append(f"- skipped: {', '.join(TEAMS[1:])} (quick)")
    return {"runs": runs, "skipped": skipped}, lines


def section_repeats(day: Day) -> tuple[Any, list[str]]:
    repeated = REPEATED[:1] if day.args.quick else REPEATED
    if not any(day.runs.get(t) for t in repeated):
        raise Skip("no first run of the repeated teams (section teams)")
    wanted = 2 if day.args.quick else 3
    data, lines, skipped = {}, [], []
    for target in (wanted, 5 if not day.args.quick else wanted):
        for team in repeated:
            runs = day.runs.get(team)
            while runs and len(runs) < target:
                try:
                    runs.append(day.harness_run(team, len(runs) + 1))
                except Skip as exc:
                    skipped.append(f"{team} run {len(runs) + 1}: {exc}")
                    break
    for team in repeated:
        runs = [r for r in day.runs.get(team, []) if r.get("speedup") is not None]
        if len(runs) < 2:
            continue
        speedups = [r["speedup"] for r in runs]
        overlap = max(r["low"] for r in runs) <= min(r["high"] for r in runs)
        spread = (max(speedups) - min(speedups)) / statistics.fmean(speedups)
        data[team] = {"speedups": speedups, "all_overlap": overlap, "spread": spread,
                      "intervals": [[r["low"], r["high"]] for r in runs]}
        lines += run_lines(runs)
        lines.append(f"- {team}: {len(runs)} runs, speedups {', '.join(f'{s:.2f}' for s in speedups)}; spread "
                     f"(max-min)/mean {spread:.1%}; every interval overlapping every other: "
                     f"{'yes' if overlap else 'NO'}")
        lines.append("")
    lines += [f"- skipped: {s}" for s in skipped]
    if not data:
        raise Skip("fewer than two runs of each repeated team fitted: " + "; ".join(skipped))
    return data, lines


def section_time_split(day: Day) -> tuple[Any, list[str]]:
    command = [sys.executable, str(REPO / "bench" / "example_teams.py"), "--device", day.device,
               "--data-dir", str(day.args.data_dir), "--max-examples", "2" if day.args.quick else "16",
               "--rounds", "2" if day.args.quick else "5"]
    if day.args.quick:
        command += ["--teams", "demo_team"]
    done = day.budget.run(command, 40 if day.args.quick else 150, "the host/model/end-to-end split")
    if done.returncode != 0:
        raise Skip(f"bench/example_teams.py failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return {"output": done.stdout}, ["```", done.stdout.rstrip(), "```"]


def section_channel(day: Day) -> tuple[Any, list[str]]:
    rounds, calls = ("3", "50") if day.args.quick else ("20", "200")
    done = day.budget.run([sys.executable, str(REPO / "bench" / "channel_overhead.py"), "--rounds", rounds,
                           "--calls", calls], 20 if day.args.quick else 60, "the channel overhead")
    if done.returncode != 0:
        raise Skip(f"bench/channel_overhead.py failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return {"output": done.stdout}, ["```", done.stdout.rstrip(), "```"]


def mib(value: Any) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f}"


def section_memory(day: Day) -> tuple[Any, list[str]]:
    from harness.crosscheck import PEAK_SLACK_BYTES, RESIDENT_SLACK_BYTES

    firsts = [runs[0] for runs in day.runs.values() if runs and runs[0].get("tasks")]
    if not firsts:
        raise Skip("no measured run (section teams)")
    lines = [f"MiB over the fresh worker's baseline; slack assumed: resident {mib(RESIDENT_SLACK_BYTES)} (more with "
             f"ONNX weights: crosscheck.resident_slack), peak "
             f"{mib(PEAK_SLACK_BYTES)} beyond the counted bytes.", "",
             "| side | task | params | counted MiB | resident growth | beyond counted | peak growth | beyond counted | "
             "device memory (NVML) |", "|---|---|---|---|---|---|---|---|---|"]
    data = []
    for run in firsts:
        for task, t in run["tasks"].items():
            data.append({"side": run["team"], "task": task, **t})
            lines.append(f"| {run['team']} | {task} | {t.get('params') or 0:,} | {mib(t.get('explained_bytes'))} | "
                         f"{mib(t.get('memory_growth_bytes'))} | {mib(t.get('unexplained_resident_bytes'))} | "
                         f"{mib(t.get('memory_peak_bytes'))} | {mib(t.get('unexplained_peak_bytes'))} | "
                         f"{mib(t.get('device_memory_bytes'))} |")
    for task, r in firsts[0]["reference"].items():
        data.append({"side": "reference", "task": task, **r})
        lines.append(f"| reference | {task} | {r.get('params') or 0:,} | - | {mib(r.get('memory_growth_bytes'))} | - | "
                     f"{mib(r.get('memory_peak_bytes'))} | - | {mib(r.get('device_memory_bytes'))} |")
    return data, lines


def section_freezing(day: Day) -> tuple[Any, list[str]]:
    firsts = [runs[0] for runs in day.runs.values() if runs and runs[0].get("tasks")]
    if not firsts:
        raise Skip("no measured run (section teams)")
    lines = ["| team | task | frozen windows | freeze s in all | per window ms | first-sight block |",
             "|---|---|---|---|---|---|"]
    data = []
    for run in firsts:
        for task, t in run["tasks"].items():
            per = t.get("freeze_s_per_window")
            data.append({"team": run["team"], "task": task, "frozen_windows": t.get("frozen_windows"),
                         "freeze_s": t.get("freeze_s"), "freeze_s_per_window": per})
            lines.append(f"| {run['team']} | {task} | {t.get('frozen_windows')} | {t.get('freeze_s') or 0:.2f} | "
                         f"{per * 1000 if per is not None else float('nan'):.2f} | {t.get('first_sight_block')} |")
    total = sum(d["freeze_s"] or 0 for d in data)
    wall = sum(run["wall_s"] for run in firsts)
    lines.append(f"- freezing took {total:.1f} s of {wall:.0f} s of run wall time ({total / wall:.1%}; goal at most 5%)")
    beside: dict[str, Any] = {}
    try:
        if day.args.quick:
            raise Skip("quick")
        run = day.harness_run("idle_saboteur_team", 1, REPO / "bench" / "teams" / "idle_saboteur_team")
        lines += ["", f"The reference beside bench/teams/idle_saboteur_team (keeps the {day.device} busy whenever it is "
                  "not inside predict(); frozen while the reference is timed, but work it already queued on a GPU "
                  "runs on): the reference's mean timed pass against its last warm-up windows (warm-up inputs of "
                  "the same shapes), and against its timed pass beside the first honest team of section 3.", "",
                  "| task | timed pass s | warm-up window s | timed / warm-up | beside honest s | saboteur / honest |",
                  "|---|---|---|---|---|---|"]
        honest = firsts[0]["reference"]
        for task, ref in run.get("reference", {}).items():
            ratio = ref["time_s"] / ref["warmup_window_s"] if ref.get("warmup_window_s") else None
            calm = (honest.get(task) or {}).get("time_s")
            beside[task] = {"timed_pass_s": ref["time_s"], "warmup_window_s": ref.get("warmup_window_s"),
                            "ratio": ratio, "beside_honest_s": calm,
                            "saboteur_over_honest": ref["time_s"] / calm if calm else None}
            versus = beside[task]["saboteur_over_honest"]
            lines.append(f"| {task} | {ref['time_s']:.4f} | {ref.get('warmup_window_s') or 0:.4f} | "
                         f"{f'{ratio:.2f}' if ratio else '-'} | {f'{calm:.4f}' if calm else '-'} | "
                         f"{f'{versus:.2f}' if versus else '-'} |")
    except Skip as exc:
        lines.append(f"- skipped: the reference beside a team that keeps the device busy while idle: {exc}")
    return {"per_task": data, "freeze_share": total / wall if wall else None, "beside_saboteur": beside}, lines


SECTION_FUNCTIONS: dict[str, Callable[[Day], tuple[Any, list[str]]]] = {
    "box": section_box, "reference": section_reference, "teams": section_teams, "repeats": section_repeats,
    "time_split": section_time_split, "channel": section_channel, "memory": section_memory,
    "freezing": section_freezing}
TITLES = {"box": "1. The box", "reference": "2. The reference: precision and TF32",
          "teams": "3. Every bundled team through the pipeline", "repeats": "4. Reproducibility",
          "time_split": "5. Where the time goes", "channel": "6. The channel's overhead",
          "memory": "7. Memory cross-checks", "freezing": "8. Freezing the side not being timed"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_day.md, gpu_day.json, the runs")
    parser.add_argument("--budget-s", type=float, help="hard time budget in seconds (default 480; 170 with --quick)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--data-dir", type=Path, default=BASELINES / "sample_data",
                        help="CLUE data in the official layout (default: the bundled sample data)")
    parser.add_argument("--max-examples", type=int, default=0, help="examples per task (0: all)")
    parser.add_argument("--spec", type=Path, help="a spec other than specs/nlpcc2020.toml")
    parser.add_argument("--reference", type=Path, help="a reference folder other than the bundled BERT-base "
                        "(--quick: the test suite's fake reference)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings for a CPU dry run: the demo team, 2 examples a task, the fake reference")
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 170.0 if args.quick else 480.0
    if args.quick:
        args.max_examples = args.max_examples or 2
        if args.spec is None:
            args.spec = REPO / "tests" / "fixtures" / "spec_small.toml"
        if args.reference is None:
            args.reference = FAKE_REFERENCE
    args.data_dir = args.data_dir.resolve()
    day = Day(args)
    day.out.mkdir(parents=True, exist_ok=True)
    report = [f"# GPU day: {day.device} ({'quick dry run' if args.quick else 'full'}), "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "",
              f"Budget {args.budget_s:.0f} s; data {args.data_dir}; examples per task "
              f"{args.max_examples or 'all'}; spec {args.spec or 'specs/nlpcc2020.toml'}.", ""]
    for name in SECTIONS:
        started = time.monotonic()
        try:
            data, lines = SECTION_FUNCTIONS[name](day)
            day.data[name] = {"data": data, "seconds": time.monotonic() - started}
        except Skip as exc:
            day.data[name] = {"skipped": str(exc)}
            lines = [f"skipped: {exc}"]
        except Exception as exc:      # one broken section must not lose the others' figures
            day.data[name] = {"skipped": f"failed: {type(exc).__name__}: {exc}"}
            lines = [f"skipped: failed with {type(exc).__name__}: {exc}"]
        report += [f"## {TITLES[name]}", "", *lines, ""]
        print(f"gpu_day: {name} done at {time.monotonic() - day.budget.started:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.monotonic() - day.budget.started
    report.append(f"Finished in {elapsed:.0f} s of a {args.budget_s:.0f} s budget.")
    day.data["elapsed_s"] = elapsed
    text = "\n".join(report) + "\n"
    (day.out / "gpu_day.md").write_text(text, encoding="utf-8")
    (day.out / "gpu_day.json").write_text(json.dumps(day.data, indent=2, default=str) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
