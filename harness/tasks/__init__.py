"""The task registry: one module per task, each exporting TASK, registered here and only here."""

from __future__ import annotations

from harness.tasks import cluener2020, cluewsc2020, cmrc2018, csl
from harness.tasks.base import Task, TaskDataError, TaskScore

TASKS: dict[str, Task] = {module.TASK.name: module.TASK for module in (cluewsc2020, csl, cluener2020, cmrc2018)}


def get_task(name: str) -> Task:
    """The task called `name`, or a KeyError listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "Task", "TaskDataError", "TaskScore", "get_task"]
