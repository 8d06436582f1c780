"""The `harness` command line: thin commands that parse options, build the run's settings from them once
(harness.settings), make a config from those (harness.config) and call the library."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from harness import __version__
from harness.backends import BACKENDS, DockerUnavailable, docker_unless_local
from harness.backends.docker import RUNNER_IMAGE, connect
from harness.batch import box_lock, run_batch
from harness.calibration import calibrate_box, calibration_line
from harness.check import host_work_diagnosis, verdicts
from harness.doctor import diagnose
from harness.gpu import nvml_unavailable_reason
from harness.cleanup import collect_garbage
from harness.console import (TimingLines, plain, print_findings, print_gc_report, print_task_score,
                             print_team_result, print_verdicts, visible)
from harness.config import HarnessError, run_config
from harness.engine import Engine
from harness.local_engine import LocalEngine
from harness.paths import REFERENCE_DIR, SAMPLE_DATA_DIR
from harness.pipeline import run_team
from harness.ray_engine import RayEngine
from harness.scoring import ranked_score
from harness.settings import RunSettings
from harness.slots import ray_start_line
from harness.spec import SpecError, load_spec
from harness.tasks import TASKS, TaskDataError, get_task


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lightlm-harness"


def absolute(ctx, param, value):
    """Every path option made absolute against the current folder once, at the edge: the harness runs
    setup scripts and workers in other folders, where a relative path would mean something else. Links
    are not resolved (a team folder given as a link keeps its name)."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(Path(os.path.abspath(v)) for v in value)
    return Path(os.path.abspath(value))


def spec_option(command):
    return click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path), callback=absolute,
                        help="competition spec (default: the bundled specs/nlpcc2020.toml)")(command)


def run_options(default_backend: str, only: tuple[str, ...] | None = None):
    """Options shared by `run`, `check` and `batch`: where data comes from, where results go, how to run.
    `only` keeps the options of those parameter names (`doctor --calibrate` takes a few)."""
    options = [
        spec_option,
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=SAMPLE_DATA_DIR,
                     callback=absolute, show_default="bundled sample data", help="folder with the spec's gold files"),
        click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=Path("results"), callback=absolute, show_default=True,
                     help="results folder (CSV, JSON, logs)"),
        click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default=default_backend,
                     show_default=default_backend,
                     help="docker: isolated container (production); local: venv and subprocess, no isolation, "
                          "no Docker needed; auto: docker when available, else local"),
        click.option("--max-examples", type=click.IntRange(min=1),
                     help="use only the first N examples of each task (quick runs)"),
        click.option("--device", default="auto", show_default=True,
                     help="auto (cuda when available), cuda or cpu"),
        click.option("--timeout", "timeout_s", type=click.FloatRange(min=1),
                     help="seconds before the team's probe run is killed (default: the spec's sandbox.timeout_s)"),
        click.option("--reference", "reference_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     default=REFERENCE_DIR, callback=absolute, show_default="baselines/bert_reference",
                     help="reference predictor folder (docker: the bundled one runs in the runner image, another "
                          "is copied into an image built FROM it)"),
        click.option("--runner-image", default=RUNNER_IMAGE, show_default=True,
                     help="docker backend: the image team images are built FROM and the reference runs in"),
        click.option("--allow-busy-gpu", is_flag=True,
                     help="time even when another process holds the GPU (the row is flagged)"),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=default_cache_dir, callback=absolute, show_default="~/.cache/lightlm-harness",
                     help="where built team environments are kept"),
        click.option("--rebuild", is_flag=True,
                     help="build every team again from its setup script, ignoring a cached build of the same "
                          "content (batch: and rerun teams whose result is unchanged). Failed builds are never "
                          "cached: they are retried on the next run anyway"),
    ]

    def decorate(command):
        for option in reversed(options):
            if only is not None and _parameter_name(option) not in only:
                continue
            command = option(command)
        return command
    return decorate


def _parameter_name(option) -> str:
    """The parameter name an option decorator adds (decorated onto a throwaway function to read it)."""
    return option(lambda: None).__click_params__[0].name


def load_spec_or_fail(spec_path: Path | None):
    try:
        return load_spec(spec_path)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from exc


def count_of(n: int, noun: str) -> str:
    """'1 team', '4 teams'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def with_harness_errors(command):
    """Turn the harness's own failures into one-line messages instead of tracebacks."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (HarnessError, DockerUnavailable) as exc:
            raise click.ClickException(visible(exc)) from exc
    return wrapper


def execute(team_dir: Path, settings: RunSettings):
    config = run_config(settings)
    console = Console(stderr=True)
    console.log(plain(f"backend: {config.backend.name}"))
    # One status line, redrawn only when the run says something (no refresh thread: nothing is drawn while
    # a window is timed); each step logged above it, and where each task's timing stands (TimingLines).
    with Live(Text("starting"), console=console, transient=True, auto_refresh=False) as live:
        def show(text: Text) -> None:
            live.update(text, refresh=True)
        result = run_team(team_dir, config, say=lambda message: (show(plain(message)), console.log(plain(message))),
                          progress=TimingLines(console, show))
    return config.spec, result


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def main():
    """Rerun light language models, measure them fairly, score them as the official scorers do.

    \b
    harness run baselines/demo_team          one team: build, measure, score, write results/results.csv
    harness check my_team/                   self-check before submitting, a verdict per rule
    harness batch submissions/               every team: leaderboard.csv, report.html
    harness gc submissions/                  remove team images and builds no team folder needs
    harness score csl gold.json pred.json    score one prediction file
    """


ROW_NOT_OK_EXIT = 3


@main.command()
@click.argument("team_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), callback=absolute)
@run_options(default_backend="docker")
@click.option("--exit-code", "row_exit_code", is_flag=True,
              help=f"exit {ROW_NOT_OK_EXIT} when the team's row is not ok (build_failed, probe_failed, timeout, "
                   "partial, invalid_submission, harness_failed); without it a written row exits 0 whatever "
                   "its status")
@with_harness_errors
def run(team_dir, row_exit_code=False, **options):
    """Build one team from its setup script, time it against BERT-base, score it, write a CSV row.

    The team and the BERT-base reference run in two workers at once and the host times them interleaved,
    round by round, on the same inputs, batch sizes and device; the speedup carries a 95% interval. Results
    go to OUT/results.csv (one row per team, columns documented in the README), OUT/TEAM/result.json, the
    predictions and the logs.

    Exit codes: 0 a row was written (its `status` column says how the team fared), 1 the harness itself
    could not produce a fair row (the message says why), 2 a usage error; with --exit-code, 3 when the
    row's status is not ok. Scripts: `harness run TEAM --exit-code || echo "see results/results.csv"`.

    \b
    Example:
      harness run baselines/demo_team --backend local --out results
      harness run teams/alpha --data-dir /data/clue --max-examples 200
      harness run teams/alpha --rebuild    # run setup.sh again although the folder is unchanged
      harness run teams/alpha --exit-code  # exit 3 unless the row's status is ok
    """
    settings = RunSettings.from_options(**options)
    spec, result = execute(team_dir, settings)
    print_team_result(Console(), result, spec)
    click.echo(visible(f"wrote {settings.out_dir / 'results.csv'} and "
                       f"{settings.out_dir / result.team / 'result.json'}"))
    if row_exit_code and result.status != "ok":
        click.echo(visible(f"{result.team}: status {result.status}, not ok (--exit-code)"), err=True)
        raise SystemExit(ROW_NOT_OK_EXIT)


@main.command()
@click.argument("team_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), callback=absolute)
@run_options(default_backend="auto")
@with_harness_errors
def check(team_dir, **options):
    """Self-check a team folder before submitting: one PASS/FAIL verdict per rule.

    Runs exactly what the organizers run (by default with the local backend, which needs no Docker
    and no GPU) and exits non-zero when any rule fails. Without a GPU the timings are indicative only.

    \b
    Example:
      harness check my_team/
      harness check my_team/ --data-dir ~/clue --max-examples 100
    """
    spec, result = execute(team_dir, RunSettings.from_options(**options))
    console = Console()
    print_team_result(console, result, spec)
    results = verdicts(result, spec)
    print_verdicts(console, results)
    if result.environment.device == "cpu":
        console.print("No GPU here: timings and the speedup are indicative only; the organizers time on the GPU box.")
    diagnosis = host_work_diagnosis(result, spec)
    if diagnosis:       # last: where the team's time goes, when host work dominates it
        console.print(plain(diagnosis), soft_wrap=True)
    if not all(v.passed for v in results):
        raise SystemExit(1)


class RichBatchProgress:
    """Teams done and left, the current team and stage (where its timing stands), elapsed and estimated time.
    The bar is redrawn at each of these events only (the Progress has no refresh thread: nothing is drawn
    while a window is timed)."""

    def __init__(self, progress):
        self.progress = progress
        self.task = None
        self.timing = TimingLines(progress.console, lambda text: self.stage(text.plain))

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("starting", total=total)
        self.progress.refresh()

    def stage(self, message: str) -> None:
        self.progress.update(self.task, description=visible(message))   # its column reads no markup
        self.progress.refresh()

    def team_done(self, result, cached: bool) -> None:
        how = "cached" if cached else result.status
        self.progress.console.log(plain(f"{result.team}: {how}" + (f" ({result.error})" if result.error else "")))
        self.progress.advance(self.task)
        self.progress.refresh()


@main.command()
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), callback=absolute)
@run_options(default_backend="docker")
@click.option("--gc", "collect", is_flag=True,
              help="afterwards, remove team images and local builds no team folder needs (see `harness gc`)")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one team after the other on this box; ray: each team on a box slot of a Ray cluster "
                   "(pip install 'lightlm-harness[cluster]'), outputs written here as with local")
@click.option("--ray-address", help="the Ray cluster to join (ray start --head prints it); without it, --engine "
                                    "ray starts an embedded cluster on this machine")
@click.option("--ray-slots", type=click.IntRange(min=1), default=1, show_default=True,
              help="box slots of the embedded cluster (no --ray-address): 1 is the whole box; N splits it into N "
                   "equal slots, a GPU and a disjoint CPU set each (see `harness doctor --slots N`)")
@click.option("--calibration/--no-calibration", default=True, show_default=True,
              help="after the teams, time the reference against a copy of itself on each box or slot that timed "
                   "them (the A/A row, OUT/calibration.csv); a box not within 1.00 ± 3% flags the rows it timed")
@with_harness_errors
def batch(submissions_dir, collect=False, engine="local", ray_address=None, ray_slots=1, calibration=True,
          **options):
    """Run every team folder in SUBMISSIONS_DIR: the organizers' nightly job.

    Writes OUT/leaderboard.csv (compliant teams ranked by final score, then the others with the reason),
    OUT/report.html, OUT/summary.json and a record and logs per team. Each team is timed against its own
    reference worker, interleaved round by round, so a batch of failed builds times nothing. A rerun skips
    teams whose content, harness, spec and settings are unchanged (and says so), except teams whose build
    failed (the cause may be the box, not the team: they are built again); --rebuild reruns every team from
    a fresh build. An interrupted batch resumes where it stopped; a lock keeps a second batch off the box.
    One team's failure never stops the batch: the exit code says only whether the harness itself failed.
    Each box (or Ray slot) that timed teams then times BERT-base against a copy of itself (the A/A row,
    OUT/calibration.csv and .json, a section of the report): a box whose interval is not inside 1.00 ± 3%
    flags every row it timed that night.

    \b
    Example:
      harness batch /srv/submissions --data-dir /srv/clue --out /srv/results/nightly
      harness batch /srv/submissions --rebuild    # after the runner image or the box changed
      harness batch /srv/submissions --engine ray --ray-address 10.0.0.1:6379   # on every GPU box of a cluster
      harness batch /srv/submissions --engine ray --ray-slots 8   # one 8-GPU box: a team per GPU at a time
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    if ray_slots != 1 and (engine != "ray" or ray_address):
        raise click.UsageError("--ray-slots sets the slots of the embedded cluster (--engine ray without "
                               "--ray-address); a cluster's nodes offer theirs with `ray start --resources` "
                               "(see `harness doctor --slots N`)")
    settings = RunSettings.from_options(**options)
    config = run_config(settings)
    console = Console(stderr=True)
    if nvml_unavailable_reason():
        console.print(plain(f"note: {nvml_unavailable_reason()}; GPU health is not recorded"))
    columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    with Progress(*columns, console=console, auto_refresh=False) as progress:
        summary = run_batch(submissions_dir, config, lock_dir=settings.cache_dir,
                            progress=RichBatchProgress(progress), reuse_results=not settings.rebuild,
                            engine=batch_engine(engine, settings, ray_address, ray_slots), calibrate=calibration)
    out = config.out_dir
    counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items())
    click.echo(f"{count_of(summary.teams, 'team')} ({counts}; {len(summary.cached)} from cache, "
               f"{summary.compliant} compliant); {count_of(summary.reference_runs, 'team')} timed against the "
               "reference")
    if summary.cached:
        click.echo(visible(f"unchanged since their last result, not rerun: {', '.join(summary.cached)}"))
    for record in summary.calibration:
        flagged = f"; {count_of(record['rows_flagged'], 'row')} flagged" if record.get("rows_flagged") else ""
        click.echo(visible(calibration_line(record) + flagged))
    click.echo(f"wrote {out / 'leaderboard.csv'}, {out / 'calibration.csv'}, {out / 'report.html'}, "
               f"{out / 'summary.json'}")
    if collect:
        garbage_collect([submissions_dir], config.spec, settings.cache_dir, settings.runner_image,
                        config.backend.name)


def batch_engine(name: str, settings: RunSettings, ray_address: str | None, ray_slots: int) -> Engine:
    """--engine: local, one team after the other on this box; ray, each team on a box slot of a Ray cluster,
    each node making its configuration from `settings`."""
    return RayEngine(settings, ray_address, ray_slots) if name == "ray" else LocalEngine()


def garbage_collect(folders: list[Path], spec, cache_dir: Path, runner_image: str, backend: str,
                    dry_run: bool = False) -> None:
    """Shared by `gc` and `batch --gc`: docker images too unless the backend is local (and an engine answers)."""
    client = docker_unless_local(backend, connect, lambda exc: click.echo(f"no Docker engine: local builds only "
                                                                          f"({exc})", err=True))
    with box_lock(cache_dir):  # never while a batch on this box may be building or using them
        report = collect_garbage(folders, spec, cache_dir, runner_image, client, dry_run)
    print_gc_report(Console(), report, dry_run)


@main.command()
@click.argument("folders", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path), callback=absolute)
@spec_option
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True,
              help="what to clean: docker (team images and local builds), local (local builds only), "
                   "auto (docker when an engine answers)")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=default_cache_dir,
              callback=absolute, show_default="~/.cache/lightlm-harness", help="where built team environments are kept")
@click.option("--runner-image", default=RUNNER_IMAGE, show_default=True,
              help="the runner image current team images are built FROM (never removed)")
@click.option("--dry-run", is_flag=True, help="say what would be removed, remove nothing")
@with_harness_errors
def gc(folders, spec_path, backend, cache_dir, runner_image, dry_run):
    """Remove team images and local builds that no current team folder needs, and say what that freed.

    FOLDERS are team folders or folders of team folders (the batch's SUBMISSIONS_DIR). Kept: what the
    next run of those teams would reuse (same content, harness version, spec, runner image; for local
    builds the same interpreter and environment) and the runner image. Everything else labelled as a
    team image, and every other local build under --cache-dir, is removed: results never need them; so are
    worker containers left (paused, maybe) by harness runs on this host that were killed.

    \b
    Example:
      harness gc /srv/submissions --dry-run
      harness gc /srv/submissions --spec specs/nlpcc2020.toml
    """
    garbage_collect(list(folders), load_spec_or_fail(spec_path), cache_dir, runner_image, backend, dry_run)


CALIBRATE_OPTIONS = ("spec_path", "data_dir", "out_dir", "backend", "max_examples", "device", "reference_dir",
                     "runner_image", "allow_busy_gpu", "cache_dir")


@main.command()
@click.option("--slots", type=click.IntRange(min=1), default=1, show_default=True,
              help="the box slots this node would offer to a Ray cluster (batch --engine ray): 1 is the whole "
                   "box; N splits it into N equal slots, a GPU and a disjoint CPU set each")
@click.option("--calibrate", is_flag=True,
              help="instead of the checks, time the reference against a copy of itself on this box (the A/A "
                   "row a batch runs) and say whether the box is fair: exit 1 when it is not proven fair. The "
                   "options below apply to it; its logs go to OUT/@calibration")
@run_options(default_backend="auto", only=CALIBRATE_OPTIONS)
@with_harness_errors
def doctor(slots=1, calibrate=False, **options):
    """Say what this machine can do and, for each thing missing, what to do about it.

    Checks the Docker engine, the runner image, the NVIDIA container runtime, the GPUs through NVML
    (and whether another process holds one), torch/transformers for the local backend, and the box slots
    this node would offer a Ray cluster, with the `ray start` line that offers them. Exits 1 when
    something the production path needs is missing.

    \b
    With --calibrate it checks the box's fairness instead: BERT-base against a copy of itself through the
    protocol a team goes through, the speedup's interval printed with the verdict (fair inside 1.00 ± 3%,
    unfair wholly outside, undecided when it straddles a bound); exit 1 unless fair.

    \b
    Example:
      harness doctor
      harness doctor --slots 8     # an 8-GPU box as eight slots of one GPU each
      harness doctor --calibrate --backend local --device cuda --data-dir /srv/clue --max-examples 200
    """
    if calibrate:
        settings = RunSettings.from_options(**options)
        config = run_config(settings)
        with box_lock(settings.cache_dir):   # never beside a batch: each would distort the other's timings
            record = calibrate_box(config)
        click.echo(visible(calibration_line(record)))
        if record["verdict"] != "fair":
            raise SystemExit(1)
        return
    findings = diagnose(slots)
    console = Console()
    print_findings(console, findings)
    if all(f.ok for f in findings if f.what == "box slots"):
        console.print(plain(f"offer this box to a Ray cluster (harness batch --engine ray): "
                            f"{ray_start_line(slots)}"), soft_wrap=True)
    if not all(f.ok for f in findings):
        raise SystemExit(1)


@main.command()
@click.argument("task", type=click.Choice(sorted(TASKS)))
@click.argument("gold", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("pred", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print exactly one JSON object on stdout")
@spec_option
def score(task, gold, pred, as_json, spec_path):
    """Score one prediction file against its gold file, exactly as the official scorer does.

    Exits 0 whenever a score was computed, even with problems in the predictions (they are listed);
    non-zero only when a file cannot be read at all.

    \b
    Example:
      harness score cluener2020 data/cluener2020/dev.json cluener2020_predict.json
      harness score cmrc2018 data/cmrc2018/trial.json cmrc2018_predict.json --json
    """
    spec = load_spec_or_fail(spec_path)
    try:
        task_spec = spec.task(task)
    except KeyError as exc:
        raise click.ClickException(str(exc.args[0])) from exc
    module = get_task(task)
    try:
        gold_records = module.read_gold(gold)
        records, problems = module.read_predictions(pred)
    except TaskDataError as exc:
        raise click.ClickException(str(exc)) from exc
    scored = ranked_score(task_spec, gold_records, records, problems)
    if as_json:
        click.echo(json.dumps(scored.to_dict(), ensure_ascii=False))
    else:
        print_task_score(Console(), scored, task_spec.ranking_metric)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
