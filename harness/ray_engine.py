"""`harness batch --engine ray`: every team's build, measurement and scoring as one Ray task on a node that
offers a box slot; the leader (where the command runs) keeps everything else.

Ray does the scheduling: a task asks for one unit of the custom resource SLOT_RESOURCE, so it runs only on
a node that offers a box slot (`ray start --resources='{"harness_box_slot": 1}'`), one team per slot at a
time. A node started with N > 1 slots splits itself into N equal slots (harness.slots: a GPU each and a
disjoint CPU set each); the task claims a free one and keeps its workers inside it. Without an address Ray
starts an embedded local cluster on this machine with `slots` slots (one by default: the same command on one
box). Tasks are SPREAD over the nodes that offer a free slot. A Ray worker process runs team after team, as
the local engine's loop does (its harness fork server, which imported torch and transformers once, serves
them all): it claims the slot it held last when that one is free, the layout reads the node's CPUs from
before any pinning, and the fork server is started anew when the pinning changed.
Each team is still timed against its own reference worker on the node that runs it (harness.pipeline's
run_team, unchanged). What crosses from node to leader is data: the team's JSON record and the files of its
output folder (logs already tail-capped, predictions), bounded in number and size; the leader writes them
with its own safe writers and stamps where the team was timed; harness.batch keeps the cache, the lock, the
leaderboard, report.html and summary.json exactly as with the local engine (harness.local_engine). What
crosses from leader to node is data too: the run's settings as plain values (harness.settings), from which
the node makes its own configuration, and the team folder.

The A/A row (harness.calibration): after the teams, each slot that timed any of them runs the reference
against a copy of itself as one more Ray task, pinned to that node (NodeAffinitySchedulingStrategy) and
claiming that slot; its record comes back as data (its logs stay on the node). A slot it cannot claim, or a
node that died meanwhile, is a failed calibration: the rows it timed say they were not calibrated.

Faults: a team's own failure is a row the node returns, never a Ray error. A Ray system error (the node
died, its worker process crashed, the object was lost) is a node fault: the leader submits the team again,
up to NODE_ATTEMPTS in all, and the row says it was retried and why. The team's folder travels as an
archive, so a node needs no view of the leader's disk; the data folder, the spec and the runner image must
be the same on every node (README, "Several boxes").
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import tarfile
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.batch import result_from_record
from harness.config import HarnessError, run_config
from harness.engine import BatchProgress
from harness.pipeline import PreparedData
from harness.records import Placement
from harness.results import TeamResult, write_result_json
from harness.safe_files import fresh_dir, write_new_bytes
from harness.settings import RunSettings
from harness.slots import (SLOT_RESOURCE, Slot, SlotError, claim, claim_dir, node_cpus, node_gpus, pin_process,
                           slot_layout)
from harness.submission import Submission

NODE_ATTEMPTS = 3                    # a team whose node dies is tried on another, this many times in all
MAX_RETURNED_FILES = 200
MAX_RETURNED_BYTES = 64 * 2**20      # an output folder is logs (tail-capped), predictions and a record


class RayUnavailable(HarnessError):
    """Ray is not installed or the cluster does not answer; the message says what to do."""


def team_archive(team_dir: Path) -> bytes:
    """The team folder as a tar: files (executable bits kept), folders and links as links, so the node's
    content hash is the leader's. Unpacked with tarfile's "data" filter: a link out of the folder fails there."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(Path(team_dir).rglob("*")):
            if path.is_symlink() or path.is_file() or path.is_dir():
                tar.add(path, arcname=str(path.relative_to(team_dir)), recursive=False)
    return buffer.getvalue()


def output_files(folder: Path) -> dict[str, bytes]:
    """The regular files below `folder`, by relative path, bounded in number and total size."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file() or len(files) >= MAX_RETURNED_FILES:
            continue
        size = path.stat().st_size
        if total + size > MAX_RETURNED_BYTES:
            continue
        files[str(path.relative_to(folder))] = path.read_bytes()
        total += size
    return files


def node_slot_count() -> int:
    """How many box slots this node was started with (its SLOT_RESOURCE total); 1 when Ray cannot say."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return max(1, int(node.get("Resources", {}).get(SLOT_RESOURCE, 1)))
    return 1


def slot_placement(slot: Slot) -> dict[str, Any]:
    """Where on the node the team was timed: slot, CPU set, GPU index and model (the node's NVML names)."""
    gpus = {g["index"]: g["name"] for g in node_gpus()}
    gpu = slot.gpu if slot.gpu is not None else (0 if len(gpus) == 1 else None)
    return {**slot.record(), "gpu_index": gpu, "gpu_name": gpus.get(gpu) if gpu is not None else
            ("; ".join(gpus.values()) or None)}


_last_slot: dict[int, int] = {}      # slot count -> the slot this worker process held last (its pinning)


def node_where() -> tuple[dict[str, Any], int]:
    """On a node: where this task runs (host, pid, Ray's node id) and how many box slots the node offers (1
    where Ray cannot say)."""
    where: dict[str, Any] = {"node": socket.gethostname(), "pid": os.getpid()}
    try:
        import ray

        where["node_id"] = ray.get_runtime_context().get_node_id()
        return where, node_slot_count()
    except Exception:
        return where, 1


def node_settings(settings: dict[str, Any], out_dir: Path) -> RunSettings:
    """The leader's run settings (RunSettings.to_dict, as sent), writing into the node's scratch `out_dir`."""
    return replace(RunSettings.from_dict(settings), out_dir=out_dir)


def run_on_node(settings: dict[str, Any], folder_name: str, archive: bytes, leader_team_dir: str,
                settings_key: str) -> dict[str, Any]:
    """On a node: claim a box slot, unpack the team, run it end to end inside the slot into a scratch output
    folder, return its record and files as data. Never raises for the team's sake: whatever goes wrong is a
    row."""
    where, count = node_where()
    where["node_started"] = time.time()
    try:
        layout = slot_layout(count, node_cpus(), [g["index"] for g in node_gpus()])
        if count == 1:             # the whole box: Ray runs one team at a time on it, nothing to claim or pin
            where.update(slot_placement(layout[0]))
            return run_in_slot(settings, folder_name, archive, leader_team_dir, settings_key, layout[0], where)
        with claim(count, claim_dir() / str(where.get("node_id", "node")), prefer=_last_slot.get(count)) as index:
            _last_slot[count] = index
            where.update(slot_placement(layout[index]))
            pin_process(layout[index])
            return run_in_slot(settings, folder_name, archive, leader_team_dir, settings_key, layout[index], where)
    except SlotError as exc:       # the node's slots are misconfigured: a row that says so
        return {"record": None, "files": {}, "where": where, "error": f"box slot: {exc}"}
    finally:       # into the reply's `where`: node_started to node_ended less the row's duration is what the
        where["node_ended"] = time.time()          # node spent outside the team's run


def run_in_slot(settings: dict[str, Any], folder_name: str, archive: bytes, leader_team_dir: str,
                settings_key: str, slot: Slot, where: dict[str, Any]) -> dict[str, Any]:
    from harness.pipeline import run_team

    with tempfile.TemporaryDirectory(prefix="harness-ray-") as tmp:
        team_dir = Path(tmp) / "teams" / folder_name
        team_dir.mkdir(parents=True)
        out_dir = Path(tmp) / "out"
        try:
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(team_dir, filter="data")
            config = run_config(node_settings(settings, out_dir), slot)
            result = run_team(team_dir, config)
        except Exception as exc:          # the harness failed on this node: a row, said in one line
            return {"record": None, "files": {}, "where": where, "error": f"{type(exc).__name__}: {exc}"}
        result = replace(result, team_dir=leader_team_dir, settings_key=settings_key)
        team_out = out_dir / result.team
        files = output_files(team_out) if team_out.is_dir() else {}
        files.pop("result.json", None)         # the leader writes the record itself
        return {"record": json.loads(json.dumps(result.to_dict(), default=str)), "files": files, "where": where,
                "node_out": str(team_out)}


def run_calibration_on_node(settings: dict[str, Any], box: str, slot_index: int) -> dict[str, Any]:
    """On a node: claim slot `slot_index` (the one the teams were timed on), time the reference against a
    copy of itself inside it, return the calibration record. Never raises: a failure is a failed record."""
    from harness.calibration import calibration_record

    where, count = node_where()
    try:
        layout = slot_layout(count, node_cpus(), [g["index"] for g in node_gpus()])
        if count == 1:
            return calibrate_in_slot(settings, box, layout[0], where)
        with claim(count, claim_dir() / str(where.get("node_id", "node")), prefer=slot_index) as index:
            if index != slot_index:
                return calibration_record(box, why_not=f"slot {slot_index + 1}/{count} stayed busy; the A/A "
                                          f"could only claim slot {index + 1}", failed=True, where=where)
            _last_slot[count] = index
            pin_process(layout[index])
            return calibrate_in_slot(settings, box, layout[index], where)
    except SlotError as exc:
        return calibration_record(box, why_not=f"box slot: {exc}", failed=True, where=where)


def calibrate_in_slot(settings: dict[str, Any], box: str, slot: Slot, where: dict[str, Any]) -> dict[str, Any]:
    from harness.calibration import calibration_record, run_calibration
    from harness.pipeline import prepare_inputs

    with tempfile.TemporaryDirectory(prefix="harness-ray-aa-") as tmp:
        try:
            config = run_config(node_settings(settings, Path(tmp)), slot)
            prepared = prepare_inputs(config.spec, config.data_dir, config.max_examples)
            ref_built = config.backend.build_reference(config.reference_dir, Path(tmp) / "reference")
            record = run_calibration(config, prepared, ref_built, box)
        except Exception as exc:
            return calibration_record(box, why_not=f"{type(exc).__name__}: {exc}", failed=True, where=where)
    record.update(where={**where, **slot_placement(slot)}, logs=f"on {where['node']} (not returned)")
    return json.loads(json.dumps(record, default=str))


def slot_box(placement: Placement) -> str:
    """The calibration section's name of the slot a team was timed on: host, Ray node id, slot when several."""
    name = f"{placement.node} node {str(placement.node_id or '')[:8]}"
    slots = int(placement.slots or 1)
    return name + (f" slot {int(placement.slot or 0) + 1}/{slots}" if slots > 1 else "")


def ray_token_available(environ: dict[str, str] | None = None, home: Path | None = None) -> bool:
    """Whether this machine holds a Ray authentication token: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
    names, or ~/.ray/auth_token (where Ray 2.5x's own ray.init and `ray start` put and look for it)."""
    environ = os.environ if environ is None else environ
    if environ.get("RAY_AUTH_TOKEN", "").strip():
        return True
    path = environ.get("RAY_AUTH_TOKEN_PATH") or str((home or Path.home()) / ".ray" / "auth_token")
    return Path(path).is_file()


def use_token_auth_to_join(environ: dict[str, str] | None = None, home: Path | None = None) -> bool:
    """Set RAY_AUTH_MODE=token before joining a cluster by its address when the mode is unset and a token is
    here: the rule `ray start` follows on a joining node. Ray's ray.init(address=...) does not follow it, and
    fails against a head started with a token ("Authentication token is missing or incorrect"); a head
    without authentication accepts a token-mode client as well. True when it set the mode."""
    environ = os.environ if environ is None else environ
    if "RAY_AUTH_MODE" in environ or not ray_token_available(environ, home):
        return False
    environ["RAY_AUTH_MODE"] = "token"
    return True


def _reread_ray_config() -> None:
    """Ray reads RAY_AUTH_MODE into its configuration when imported; a process that imported it earlier has
    it read again (what Ray's own token set-up does), where this Ray has the call."""
    try:
        from ray._raylet import Config

        Config.initialize("")
    except Exception:          # another Ray: the mode is then read wherever that Ray reads it
        pass


def connect(address: str | None, slots: int = 1) -> None:
    """Join the cluster at `address`, or start an embedded one with `slots` box slots on this machine."""
    already_imported = "ray" in sys.modules
    if address and use_token_auth_to_join() and already_imported:
        _reread_ray_config()
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray: pip install 'lightlm-harness[cluster]'") from None
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        else:
            # "local": always a new instance; with None, Ray would join a cluster `ray start` left running
            ray.init(address="local", resources={SLOT_RESOURCE: slots}, log_to_driver=False,
                     include_dashboard=False)
    except Exception as exc:
        hint = ""
        if address and "uthenticat" in str(exc):
            hint = ("; the cluster wants Ray's authentication token: put the head's token on this machine "
                    "(RAY_AUTH_TOKEN, or the file ~/.ray/auth_token) and set RAY_AUTH_MODE=token")
        raise RayUnavailable(f"Ray could not start or reach a cluster at {address or 'this machine'}: "
                             f"{exc}{hint}") from None
    if not any(node.get("Resources", {}).get(SLOT_RESOURCE) for node in ray.nodes() if node.get("Alive")):
        raise RayUnavailable(f"no node of the cluster at {address} offers a box slot: start the GPU boxes with "
                             f"ray start --address=... --resources='{{\"{SLOT_RESOURCE}\": 1}}'")


def is_node_fault(exc: BaseException) -> bool:
    """A Ray system error (node died, worker crashed, object lost): the team is tried again elsewhere."""
    import ray.exceptions as rex

    faults = tuple(getattr(rex, name) for name in ("NodeDiedError", "WorkerCrashedError", "ObjectLostError",
                                                    "OwnerDiedError", "RaySystemError", "LocalRayletDiedError")
                   if hasattr(rex, name))
    return isinstance(exc, faults)


def write_team_output(out_dir: Path, team: str, files: dict[str, bytes]) -> Path:
    """The node's output files under OUT/TEAM, written anew; a name that leaves the folder is refused."""
    folder = fresh_dir(out_dir / team)
    for name, data in files.items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not isinstance(data, bytes):
            continue
        write_new_bytes(folder / relative, data)
    return folder


class RayEngine:
    """harness.engine's Engine on a Ray cluster. `settings` are the run's settings (harness.settings), sent to
    each node as plain values; the node makes its own configuration from them (harness.config.run_config): its
    own backend and caches, the same spec, data folder and runner image by path."""

    def __init__(self, settings: RunSettings, address: str | None = None, slots: int = 1):
        self.settings, self.address, self.slots = settings, address, slots
        self._placements: dict[str, Placement] = {}          # box name -> where its teams were timed

    def box_of(self, result: TeamResult) -> str:
        """The slot a team was timed on (its placement), named as in the calibration section."""
        box = slot_box(result.placement)
        self._placements.setdefault(box, result.placement)
        return box

    def reference_runs(self, measured: list[TeamResult]) -> int:
        """The rows that came back with the reference's record (a team timed against it on its node)."""
        return sum(1 for r in measured if r.reference)

    def calibrate(self, boxes: list[str], config, progress: BatchProgress) -> list[dict[str, Any]]:
        """An A/A run on each slot that timed teams, all at once (a slot each), pinned to the slot's node."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from harness.calibration import calibration_record

        progress.stage(f"A/A: the reference against a copy of itself on {len(boxes)} slot(s)")
        jobs, failed = {}, {}
        for box in boxes:
            place = self._placements[box]
            if not place.node_id:
                failed[box] = calibration_record(box, why_not="the Ray node it was timed on is unknown", failed=True)
                continue
            strategy = NodeAffinitySchedulingStrategy(place.node_id, soft=False)
            remote = ray.remote(num_cpus=0, resources={SLOT_RESOURCE: 1}, max_retries=0,
                                scheduling_strategy=strategy)(run_calibration_on_node)
            jobs[box] = remote.remote(self.settings.to_dict(), box, int(place.slot or 0))
        records = list(failed.values())
        for box, ref in jobs.items():
            try:
                reply = ray.get(ref)
                records.append(reply if isinstance(reply, dict) and reply.get("box") == box else
                               calibration_record(box, why_not="the node sent no calibration record", failed=True))
            except Exception as exc:          # the node died or is gone: the slot's rows say it was not calibrated
                records.append(calibration_record(box, why_not=" ".join(str(exc).split())[:300], failed=True))
        return records

    def measure_all(self, todo: list[tuple[TeamResult, Submission]], config, prepared: PreparedData,
                    settings_key: str, progress: BatchProgress) -> list[TeamResult]:
        """Every team as a Ray task on a box slot; results in the order they finish, each written here. Each
        node prepares its inputs from the data folder itself (`prepared`, the leader's, stays here)."""
        import ray

        connect(self.address, self.slots)
        # SPREAD: each task to the next node that offers a free slot, rather than to the node the scheduler
        # last saw free (a loaded 2-core run sent all four teams of a two-node batch to one node, in turn)
        remote = ray.remote(num_cpus=0, resources={SLOT_RESOURCE: 1}, max_retries=0,
                            scheduling_strategy="SPREAD")(run_on_node)
        jobs: dict[Any, dict[str, Any]] = {}

        def submit(job: dict[str, Any]) -> None:
            job["attempts"] += 1
            jobs[remote.remote(self.settings.to_dict(), job["folder"], job["archive"], job["team_dir"],
                               settings_key)] = job

        for result, _ in todo:
            submit({"result": result, "folder": Path(result.team_dir).name, "archive": team_archive(result.team_dir),
                    "team_dir": result.team_dir, "attempts": 0, "faults": [], "started": time.time()})
        done: list[TeamResult] = []
        retried = ""
        while jobs:
            progress.stage(on_the_cluster(jobs.values()) + retried)
            ready, _ = ray.wait(list(jobs), num_returns=1)
            job = jobs.pop(ready[0])
            try:
                reply = ray.get(ready[0])
            except Exception as exc:
                if is_node_fault(exc) and job["attempts"] < NODE_ATTEMPTS:
                    job["faults"].append(" ".join(str(exc).split())[:300])
                    retried = f"; {job['result'].team}: node fault, trying again ({job['attempts']} tries so far)"
                    submit(job)
                    continue
                reply = {"record": None, "files": {}, "where": {}, "error": " ".join(str(exc).split())[:500]}
            done.append(leader_row(job, reply, config))
            progress.team_done(done[-1], cached=False)
        return done


def on_the_cluster(jobs) -> str:
    """What the progress line says while teams run on the cluster: how many, and which (the first few)."""
    teams = [job["result"].team for job in jobs]
    shown = ", ".join(teams[:3]) + (f" and {len(teams) - 3} more" if len(teams) > 3 else "")
    return f"{len(teams)} team{'s' if len(teams) != 1 else ''} on the cluster (running or queued): {shown}"


def leader_row(job: dict[str, Any], reply: dict[str, Any], config) -> TeamResult:
    """The team's row on the leader: the node's record (its score recomputed here), where it was timed and
    how many tries it took, its files written under OUT/TEAM."""
    if reply.get("record"):
        result = result_from_record(reply["record"], config)
    else:
        result = replace(job["result"], status="harness_failed",
                         error=f"on the cluster: {reply.get('error') or 'no record came back'}",
                         duration_s=round(time.time() - job["started"], 3))
    retried = ([f"retried on another node after {len(job['faults'])} node fault(s): {job['faults'][-1]}"]
               if job["faults"] else [])
    result = replace(result, flags=(*result.flags, *retried),
                     placement=Placement.from_dict({**(reply.get("where") or {}), "attempts": job["attempts"],
                                                    "node_faults": job["faults"]}))
    folder = write_team_output(config.out_dir, result.team, reply.get("files") or {})
    node_out = reply.get("node_out")
    if node_out:          # logs named by the node's paths now live under the leader's folder
        result = replace(result, logs={k: str(folder / Path(v).relative_to(node_out)) if str(v).startswith(node_out)
                                       else v for k, v in result.logs.items()})
    write_result_json(result, config.out_dir / result.team / "result.json")
    return result
