"""`harness gc` (and `batch --gc`): remove the team images and local builds that no current team folder needs.

A box that runs the nightly batch for months accumulates one team image per team per change (per harness
version, spec and runner image too), each a few hundred MB on top of the runner image, and one local build
(a venv and a copy of the team) per team and environment. What is needed is exactly what the next run of
the current team folders would reuse: the image tag and the build folder their build would look up. Results
never need them (a cached result is stored data), and the runner image is never a team image.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends.docker import OWNER_LABEL, TEAM_LABEL, containers_of_gone_runs, team_image_tag
from harness.backends.local import LOCAL_BUILDS, build_environment, build_folder_name
from harness.spec import Spec
from harness.submission import MANIFEST, Submission, SubmissionError, load_submission, team_folders_in


@dataclass(frozen=True)
class Removed:
    kind: str          # "image", "local build" or "container"
    name: str
    bytes: int         # what removing it freed (images: the layers no other image shares; containers: 0)


@dataclass
class GcReport:
    removed: list[Removed] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    image_bytes_freed: int | None = None   # the engine's layer total before minus after, when images went

    @property
    def freed_bytes(self) -> int:
        """Local builds' bytes plus the images': measured by the engine, else (dry run) their unshared sizes."""
        local = sum(r.bytes for r in self.removed if r.kind != "image")
        images = sum(r.bytes for r in self.removed if r.kind == "image")
        return local + (images if self.image_bytes_freed is None else self.image_bytes_freed)


def current_submissions(folders: list[Path], spec: Spec, report: GcReport) -> list[Submission]:
    """Each folder is a team folder (it has a manifest) or a folder of team folders; invalid teams need nothing."""
    teams: list[Path] = []
    for folder in folders:
        if (folder / MANIFEST).is_file():
            teams.append(folder)
        else:
            teams.extend(team_folders_in(folder))
    submissions = []
    for team in teams:
        try:
            submissions.append(load_submission(team, spec))
        except SubmissionError as exc:
            report.notes.append(f"{team}: not a valid team, nothing kept for it ({exc})")
    return submissions


def folder_bytes(folder: Path) -> int:
    """Bytes under a folder, symlinks counted as links (never followed)."""
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def collect_local_builds(cache_dir: Path, submissions: list[Submission], report: GcReport, dry_run: bool) -> None:
    """Build folders of teams that are gone or changed, or made under another interpreter or environment."""
    builds = Path(cache_dir) / LOCAL_BUILDS
    if not builds.is_dir():
        return
    environment = build_environment()
    keep = {build_folder_name(s, environment) for s in submissions}
    for folder in sorted(p for p in builds.iterdir() if p.is_dir() and not p.is_symlink()):
        if folder.name in keep:
            report.kept.append(f"local build {folder.name}")
            continue
        size = folder_bytes(folder)
        if not dry_run:
            shutil.rmtree(folder)
        report.removed.append(Removed("local build", folder.name, size))


def collect_team_images(client, runner_image: str, spec: Spec, submissions: list[Submission], report: GcReport,
                        dry_run: bool) -> None:
    """Images labelled as team images whose tag no current team's build would look up.

    Without the runner image no current tag can be computed, so nothing is removed. Freed bytes are the
    engine's own layer total before and after; per image, its unshared size (what `docker system df -v` says).
    """
    import docker

    try:
        runner_id = client.images.get(runner_image).id
    except docker.errors.ImageNotFound:
        report.notes.append(f"runner image {runner_image} not found: team images left alone")
        return
    keep = {team_image_tag(s, spec, runner_id) for s in submissions}
    usage = client.df()
    unshared = {i["Id"]: max(0, i.get("Size", 0) - max(0, i.get("SharedSize", 0))) for i in usage.get("Images") or []}
    removed: list[tuple[str, int]] = []
    for image in client.images.list(filters={"label": TEAM_LABEL}):
        tags = image.tags or []
        if image.id == runner_id or set(tags) & keep:
            report.kept.append(f"image {', '.join(tags) or image.short_id}")
            continue
        name = ", ".join(tags) or image.short_id
        try:
            if not dry_run:
                for ref in tags or [image.id]:
                    client.images.remove(ref, noprune=False)
        except docker.errors.APIError as exc:  # a container still uses it: leave it for the next gc
            report.notes.append(f"image {name} not removed: {exc.explanation or exc}")
            continue
        removed.append((name, unshared.get(image.id, 0)))
    report.removed.extend(Removed("image", name, size) for name, size in removed)
    if removed and not dry_run:
        report.image_bytes_freed = max(0, (usage.get("LayersSize") or 0) - (client.df().get("LayersSize") or 0))


def collect_left_containers(client, report: GcReport, dry_run: bool) -> None:
    """Worker and scan containers of harness runs on this host that were killed (their process is gone):
    a paused worker would otherwise stay paused for good, and its image could never be removed."""
    import docker

    for container in containers_of_gone_runs(client):
        name = f"{container.name} (left by harness process {container.labels.get(OWNER_LABEL)})"
        try:
            if not dry_run:
                container.remove(force=True)
        except docker.errors.NotFound:
            continue
        report.removed.append(Removed("container", name, 0))


def collect_garbage(folders: list[Path], spec: Spec, cache_dir: Path, runner_image: str, client=None,
                    dry_run: bool = False) -> GcReport:
    """Remove (or, with dry_run, list) what the current team folders do not need; client None: local only."""
    report = GcReport()
    submissions = current_submissions(folders, spec, report)
    collect_local_builds(cache_dir, submissions, report, dry_run)
    if client is not None:
        collect_left_containers(client, report, dry_run)
        collect_team_images(client, runner_image, spec, submissions, report, dry_run)
    return report
