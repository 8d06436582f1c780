"""Benchmark: where the time goes for the bundled teams against the BERT-base reference, per task.

For each task, every team and the reference run the same batches (the spec's batch sizes) on one device.
Per batch it times, in rounds that interleave the teams and the reference (so drift of the box falls on all
of them alike):
  host   - building the model's inputs: tokenization, span marking, windows, and the copy to the device;
  model  - the model on inputs built beforehand, up to its outputs back on the host (argmax / best spans);
  e2e    - predict() end to end, as the harness times it (host + model + decoding the predictions).
It prints medians per batch with the spread over rounds (min..max), and the end-to-end speedup against the
reference with the harness's 95% interval (harness.stats.speedup_interval, tasks summed as the formula's T),
plus the model-only speedup. On a GPU the clock is read after torch.cuda.synchronize().

--ablate also times each team that lists techniques in ABLATIONS (fast_tiny_team) with each technique
switched off one at a time, and with all of them off, as extra rows "team-technique" on the same batches,
and prints what each technique buys: T(off) / T(on) end to end, with the same 95% interval. Techniques that
only act on a GPU are left out on CPU (said in the output).

The split needs predict() in steps: the example teams expose encode / forward / decode; the reference's
steps are rebuilt here from its own methods; the demo team is timed end to end only.

    python bench/example_teams.py [--device cpu|cuda] [--data-dir baselines/sample_data]
                                  [--max-examples 16] [--rounds 5] [--teams roberta_tiny_team,...] [--ablate]
Runs on a GPU box without Docker (local, --device cuda). The ONNX team's models are exported to a
temporary folder first when baselines/onnx_team/models (or --onnx-models) is missing.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness.spec import load_spec
from harness.stats import speedup_interval
from harness.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "baselines"
GOLD_FILES = {"cluewsc2020": "cluewsc2020/dev.json", "csl": "csl/dev.json",
              "cluener2020": "cluener2020/dev.json", "cmrc2018": "cmrc2018/trial.json"}
TEAMS = ("demo_team", "roberta_tiny_team", "albert_tiny_team", "onnx_team", "fast_tiny_team")
# Per team: technique -> (Predictor options that switch it off, whether it acts on CPU too).
ABLATIONS = {"fast_tiny_team": {
    "vectorized": ({"vectorized": False}, True),          # per-example Python instead of numpy
    "static_shapes": ({"static_shapes": False}, False),   # pad to the batch's longest (no graphs then)
    "half": ({"half": False}, False),                     # fp32 on the GPU
    "cuda_graphs": ({"cuda_graphs": False}, False),       # eager launches
    "pinned": ({"pinned": False}, False),                 # pageable copies
}}
_TEAM_MODULES = ("predictor", "task_inputs", "reference_inputs", "export_onnx")


def import_team(folder: Path, module: str = "predictor"):
    """A module from a team folder, with that team's helpers (every team has its own `predictor`)."""
    for name in _TEAM_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))


class ReferenceSteps:
    """The reference's predict() in the example teams' three steps, from its own methods."""

    def __init__(self, predictor, helpers):
        self.p, self.h = predictor, helpers

    def encode(self, examples):
        p, task = self.p, self.p.task
        if task == "cluewsc2020":
            return p._encode([self.h.mark_wsc_spans(e["text"], e.get("target") or {}) for e in examples]).to(p.device)
        if task == "csl":
            return p._encode([" ".join(e["keyword"]) for e in examples], [e["abst"] for e in examples]).to(p.device)
        if task == "cluener2020":
            return p._encode([list(e["text"]) for e in examples], is_split_into_words=True).to(p.device)
        questions, longest = p._clip_questions([e["question"] for e in examples])
        stride = max(0, min(p.doc_stride, (p.max_seq_length - longest - 3) // 2))
        inputs = p._encode(questions, [e["context"] for e in examples], truncation="only_second", stride=stride,
                           return_overflowing_tokens=True, return_offsets_mapping=True)
        inputs.pop("overflow_to_sample_mapping"), inputs.pop("offset_mapping")
        return inputs.to(p.device)

    def forward(self, inputs):
        with torch.inference_mode():
            out = self.p.model(**inputs)
            if self.p.task == "cmrc2018":   # the reference's span search, on a context mask of ones
                return out.start_logits.argmax(-1).tolist(), out.end_logits.argmax(-1).tolist()
            return out.logits.argmax(-1).tolist()


def ablation_variants(teams: list[str], device: str) -> dict[str, tuple[str, dict]]:
    """{row name: (team, Predictor options)}: "team-X" with technique X off alone, "team-all" with all of
    them off; on CPU, where static shapes are off by default, "team+static_shapes" with them on."""
    variants = {}
    for team in teams:
        off = {name: options for name, (options, on_cpu) in ABLATIONS.get(team, {}).items()
               if on_cpu or device.startswith("cuda")}
        for name, options in off.items():
            variants[f"{team}-{name}"] = (team, options)
        if len(off) > 1:
            variants[f"{team}-all"] = (team, {k: v for options in off.values() for k, v in options.items()})
        if not device.startswith("cuda") and team in ABLATIONS:
            variants[f"{team}+static_shapes"] = (team, {"static_shapes": True})
    return variants


def load_predictors(task: str, device: str, teams: list[str], onnx_models: Path, spec_task,
                    variants: dict[str, tuple[str, dict]] | None = None) -> dict:
    reference = import_team(BASELINES / "bert_reference")
    helpers = import_team(BASELINES / "bert_reference", "reference_inputs")
    ref = reference.Predictor(task, device, max_seq_length=spec_task.max_seq_length, padding="max_length")
    out = {"reference": (ref, ReferenceSteps(ref, helpers))}
    rows = {team: (team, {}) for team in teams} | (variants or {})
    for name, (team, options) in rows.items():
        module = import_team(BASELINES / team)
        extra = {"models_dir": onnx_models} if team == "onnx_team" else {}
        predictor = module.Predictor(task, device, **extra, **options)
        out[name] = (predictor, predictor if hasattr(predictor, "encode") else None)
    return out


def timed(call, sync) -> float:
    sync()
    start = time.perf_counter()
    call()
    sync()
    return time.perf_counter() - start


def measure_task(task: str, predictors: dict, batches: list, rounds: int, sync) -> dict:
    """{name: {"e2e"|"host"|"model": rounds x batches seconds}}, rounds interleaving every predictor."""
    for predictor, _ in predictors.values():           # warm-up: one untimed pass each
        for batch in batches:
            predictor.predict(batch)
    table = {name: {"e2e": [], "host": [], "model": []} for name in predictors}
    for _ in range(rounds):
        for name, (predictor, steps) in predictors.items():
            table[name]["e2e"].append([timed(lambda b=b: predictor.predict(b), sync) for b in batches])
            if steps is None:
                continue
            with torch.inference_mode():
                table[name]["host"].append([timed(lambda b=b: steps.encode(b), sync) for b in batches])
                encoded = [steps.encode(b) for b in batches]
                table[name]["model"].append([timed(lambda e=e: steps.forward(e), sync) for e in encoded])
    return table


def host_steps_ms(predictors: dict, batch: list, sync, repeats: int = 50) -> dict[str, tuple[float, float]]:
    """{name: (encode ms, decode ms)} on one batch, the minimum of `repeats` calls each: the host side alone,
    robust to a busy box (a minimum is what the code costs when nothing else runs). Only for predictors with
    encode / forward / decode."""
    out = {}
    for name, (predictor, steps) in predictors.items():
        if steps is None or not hasattr(steps, "decode"):
            continue
        with torch.inference_mode():
            forwarded = steps.forward(steps.encode(batch))
            encode = min(timed(lambda: steps.encode(batch), sync) for _ in range(repeats))
            decode = min(timed(lambda: steps.decode(batch, forwarded), sync) for _ in range(repeats))
        out[name] = (1000 * encode, 1000 * decode)
    return out


def per_batch_ms(rounds_table: list[list[float]]) -> str:
    if not rounds_table:
        return "-"
    per_round = [1000 * sum(r) / len(r) for r in rounds_table]
    return f"{statistics.median(per_round):8.1f} ({min(per_round):.1f}..{max(per_round):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--data-dir", type=Path, default=BASELINES / "sample_data")
    parser.add_argument("--spec", type=Path, default=REPO / "specs" / "nlpcc2020.toml")
    parser.add_argument("--max-examples", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--teams", default=",".join(TEAMS))
    parser.add_argument("--onnx-models", type=Path, default=BASELINES / "onnx_team" / "models",
                        help="the ONNX team's exported models (e.g. its build's team/models); exported afresh "
                        "to a temporary folder when cmrc2018.onnx is not there")
    parser.add_argument("--ablate", action="store_true",
                        help="also time each technique of the teams in ABLATIONS switched off, one at a time")
    args = parser.parse_args()
    teams = [t for t in args.teams.split(",") if t]
    variants = ablation_variants(teams, args.device) if args.ablate else {}
    spec = load_spec(args.spec)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    onnx_models = args.onnx_models
    if "onnx_team" in teams and not (onnx_models / "cmrc2018.onnx").is_file():
        onnx_models = Path(tempfile.mkdtemp(prefix="example-teams-onnx-"))
        export = import_team(BASELINES / "onnx_team", "export_onnx")
        for task in GOLD_FILES:
            export.export(task, onnx_models / f"{task}.onnx")
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'}),"
          f" torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds,"
          f" up to {args.max_examples} examples per task from {args.data_dir}")
    e2e: dict[str, list] = {name: [] for name in ["reference", *teams, *variants]}
    model: dict[str, list] = {name: [] for name in ["reference", *teams, *variants]}
    for spec_task in spec.tasks:
        task = get_task(spec_task.name)
        examples = task.strip_labels(task.read_gold(args.data_dir / GOLD_FILES[spec_task.name]))[:args.max_examples]
        batches = [examples[i:i + spec_task.batch_size] for i in range(0, len(examples), spec_task.batch_size)]
        predictors = load_predictors(spec_task.name, args.device, teams, onnx_models, spec_task, variants)
        table = measure_task(spec_task.name, predictors, batches, args.rounds, sync)
        host_steps = host_steps_ms(predictors, batches[0], sync) if args.ablate else {}
        del predictors
        gc.collect()
        print(f"\n{spec_task.name}: {len(examples)} examples, {len(batches)} batch(es) of <= {spec_task.batch_size},"
              f" max_seq_length {spec_task.max_seq_length}; ms per batch, median (min..max over rounds)")
        print(f"  {'':18} {'host':>22} {'model':>22} {'e2e':>22}")
        for name, t in table.items():
            columns = "".join(f" {per_batch_ms(t[part]):>22}" for part in ("host", "model", "e2e"))
            print(f"  {name:18}{columns}" if len(name) <= 18 else f"  {name}\n  {'':18}{columns}")
            e2e[name].append(t["e2e"])
            model[name].append(t["model"])
        if host_steps:
            print("  host steps alone on the first batch, min of 50 calls (ms): encode / decode")
            for name, (encode, decode) in host_steps.items():
                print(f"  {name:32} {encode:8.3f} / {decode:8.3f}")
    print("\nspeedup against the reference, all tasks (T summed over tasks as the formula does):")
    for name in [*teams, *variants]:
        interval = speedup_interval(e2e[name], e2e["reference"])
        line = f"  {name:18} end to end {interval.point:6.2f}x  95% [{interval.low:.2f}, {interval.high:.2f}]"
        if all(model[name]):
            model_only = speedup_interval(model[name], model["reference"])
            line += f"   model only {model_only.point:6.2f}x  95% [{model_only.low:.2f}, {model_only.high:.2f}]"
        print(line)
    if variants:
        print_ablations(teams, variants, e2e, args.device)


def print_ablations(teams: list[str], variants: dict, e2e: dict, device: str) -> None:
    """What each technique buys: T(technique off) / T(all on), end to end, tasks summed, 95% interval."""
    print("\nwhat each technique buys, end to end: T(variant) / T(as shipped), all tasks, 95% interval"
          " (-X: X switched off, > 1 means X saves time; +X: X switched on, < 1 means X would save time)")
    for name, (team, options) in variants.items():
        gain = speedup_interval(e2e[team], e2e[name])
        print(f"  {name:32} {options}  {gain.point:6.2f}x  95% [{gain.low:.2f}, {gain.high:.2f}]")
    if not device.startswith("cuda"):
        skipped = sorted({t for team in teams for t, (_, on_cpu) in ABLATIONS.get(team, {}).items() if not on_cpu}
                         - {"static_shapes"})
        if skipped:
            print(f"  not timed on CPU (they act on a GPU only): {', '.join(skipped)}")


if __name__ == "__main__":
    main()
