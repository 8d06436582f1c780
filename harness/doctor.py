"""`harness doctor`: what this machine can do, and for each thing missing, what to do about it."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from dataclasses import dataclass

from harness.backends.docker import RUNNER_IMAGE, DockerUnavailable, connect, docker_sdk_problem, runner_build_hint
from harness.gpu import gpu_snapshot, nvml_unavailable_reason
from harness.slots import SlotError, node_cpus, node_gpus, slot_layout


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    detail: str
    fix: str = ""


def docker_findings(runner_image: str = RUNNER_IMAGE) -> list[Finding]:
    problem = docker_sdk_problem()
    if problem:
        return [Finding("Docker SDK", False, problem,
                        "python3 -m pip install docker (it comes with the harness: python3 -m pip install -e .); "
                        "if something shadows it, rename that folder or file, or run from another folder; until "
                        "then `harness check --backend local` works without it")]
    try:
        client = connect()
    except DockerUnavailable as exc:
        return [Finding("Docker engine", False, str(exc),
                        "install Docker Engine and start it (systemctl start docker); until then "
                        "`harness check --backend local` works without it")]
    info = client.info()
    found = [Finding("Docker SDK", True, f"docker {importlib.metadata.version('docker')}"),
             Finding("Docker engine", True, f"server {info.get('ServerVersion')}, {info.get('Driver')} storage")]
    try:
        image = client.images.get(runner_image)
        found.append(Finding("runner image", True, f"{runner_image} ({image.short_id})"))
    except Exception:
        found.append(Finding("runner image", False, f"{runner_image} is not built", runner_build_hint(runner_image)))
    runtimes = info.get("Runtimes") or {}
    found.append(Finding("NVIDIA container runtime", "nvidia" in runtimes,
                         "present" if "nvidia" in runtimes else f"runtimes: {', '.join(runtimes) or 'none'}",
                         "" if "nvidia" in runtimes else
                         "install nvidia-container-toolkit and restart Docker, so containers can use the GPUs"))
    return found


def gpu_findings() -> list[Finding]:
    reason = nvml_unavailable_reason()
    if reason:
        return [Finding("GPU (NVML)", False, reason, "timings will be CPU timings, indicative only; "
                        "the competition's numbers need the GPU box")]
    gpus = gpu_snapshot()
    if not gpus:
        return [Finding("GPU (NVML)", False, "NVML answers but sees no GPU", "check the driver (nvidia-smi)")]
    busy = [g for g in gpus if g["processes"]]
    return [Finding("GPU (NVML)", True, "; ".join(f"{g['name']} (driver {g['driver']})" for g in gpus)),
            Finding("GPU idle", not busy, "no other processes" if not busy else
                    f"{sum(g['processes'] for g in busy)} process(es) hold a GPU",
                    "" if not busy else "stop them before timing: measurements need the GPU to themselves")]


def local_findings() -> list[Finding]:
    """The local backend runs the workers (team and reference) with this Python: it needs torch and transformers."""
    code = "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return [Finding("local backend", False, "torch or transformers missing in this Python",
                        "python3 -m pip install 'lightlm-harness[probe]'")]
    torch_version, transformers_version, cuda = done.stdout.split()
    return [Finding("local backend", True, f"torch {torch_version}, transformers {transformers_version}, "
                    f"CUDA {'available' if cuda == 'True' else 'not available'}")]


def slot_findings(count: int = 1, cpus: list[int] | None = None, gpus: list[dict] | None = None) -> list[Finding]:
    """The box slots this node would offer to a Ray cluster with `count` slots (harness.slots)."""
    cpus = node_cpus() if cpus is None else cpus
    gpus = node_gpus() if gpus is None else gpus
    try:
        layout = slot_layout(count, cpus, [g["index"] for g in gpus])
    except SlotError as exc:
        return [Finding("box slots", False, str(exc), "pick a count this node can split evenly: "
                        "`harness doctor --slots N`; 1 (the whole box) always works")]
    names = {g["index"]: g["name"] for g in gpus}
    if count == 1:
        gpu_text = "; ".join(f"GPU {i} {n}" for i, n in names.items()) or "no GPU"
        return [Finding("box slots", True, f"1, the whole box: CPUs {layout[0].cpuset()}, {gpu_text}")]
    spare = len(cpus) - sum(len(slot.cpus) for slot in layout)
    detail = "; ".join(slot.describe() + (f" {names[slot.gpu]}" if slot.gpu in names else "") for slot in layout)
    return [Finding("box slots", True, f"{count}: {detail}" + (f" ({spare} CPU(s) left idle: slots are equal)"
                                                               if spare else ""))]


def diagnose(slots: int = 1) -> list[Finding]:
    return [*docker_findings(), *gpu_findings(), *local_findings(), *slot_findings(slots)]
