"""Finding what a predictor holds: torch modules, plain tensors and ONNX files (declared or discovered).

The walk is bounded (depth, objects visited) and never trusts team objects: it looks at types with
type(obj), never isinstance, and any exception from a team object's __dict__ or __iter__ becomes a note.
"""

from __future__ import annotations

import collections
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from harness.probe.live_weights import is_onnxruntime_session

MAX_VISITS = 5_000_000         # objects looked at in one walk, so a huge vocabulary table cannot stall it
_MAX_DEPTH = 5                 # container / object levels walked below the predictor
_LEAF_TYPES = (str, bytes, bytearray, int, float, complex, bool, range, type(None), torch.dtype,
               torch.device, np.generic)
_OPAQUE_TYPES = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                 types.BuiltinMethodType, torch.ScriptObject)
_MODULE_REGISTRIES = ("_parameters", "_buffers", "_modules")

Array = Union[torch.Tensor, np.ndarray]


@dataclass
class Found:
    """Everything reachable from the predictor, before counting."""

    modules: dict[int, tuple[str, nn.Module]] = field(default_factory=dict)
    tensors: list[tuple[str, Array]] = field(default_factory=list)
    onnx: list[tuple[str, Path]] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)      # ids of the ONNX Runtime sessions found on the way
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def find_sources(predictor: Any, team_dir: Path | None) -> Found:
    found = Found()
    declared = getattr(predictor, "parameter_sources", None)
    walker = _Walker(found, record_modules=not callable(declared))
    if callable(declared):
        _add_declared(declared(), found, team_dir)
        for path, module in list(found.modules.values()):
            walker.scan_module_internals(path, module)
        found.notes.append("modules and ONNX files from parameter_sources(); plain tensors also looked for "
                           "on the predictor")
    walker.visit(predictor, "predictor", 0)
    if walker.truncated:
        found.notes.append(f"stopped walking the predictor after {MAX_VISITS:,} objects")
    return found


def _add_declared(declared: Any, found: Found, team_dir: Path | None) -> None:
    """Sort what parameter_sources() returned into modules, tensors and ONNX paths."""
    if isinstance(declared, (nn.Module, str, os.PathLike, torch.Tensor)):
        declared = [declared]
    for i, item in enumerate(declared or []):
        label = f"parameter_sources()[{i}]"
        if isinstance(item, nn.Module):
            found.modules.setdefault(id(item), (label, item))
        elif isinstance(item, torch.Tensor):
            found.tensors.append((label, item))
        elif isinstance(item, (str, os.PathLike)):
            found.onnx.append((label, _resolve(Path(item), team_dir)))
        else:
            found.flags.append(f"{label} is a {type(item).__name__}, which the probe cannot count: return "
                               f"torch modules or ONNX file paths")


def _resolve(path: Path, team_dir: Path | None) -> Path:
    if not path.is_absolute() and team_dir is not None and (team_dir / path).exists():
        return team_dir / path
    return path


class _Walker:
    """Walks attributes and containers (bounded depth, each object once) for modules, tensors, sessions."""

    def __init__(self, found: Found, record_modules: bool):
        self.found = found
        self.record_modules = record_modules
        self.seen: set[int] = set()
        self.visits = 0
        self.truncated = False

    def visit(self, obj: Any, path: str, depth: int) -> None:
        # type(obj), never isinstance: isinstance may consult obj.__class__, which team objects can override
        cls = type(obj)
        if issubclass(cls, _LEAF_TYPES) or id(obj) in self.seen:
            return
        self.visits += 1
        if self.visits > MAX_VISITS:
            self.truncated = True
            return
        self.seen.add(id(obj))
        if issubclass(cls, torch.Tensor) or (issubclass(cls, np.ndarray) and obj.dtype != object):
            self.found.tensors.append((path, obj))
        elif issubclass(cls, nn.Module):
            if self.record_modules:
                self.found.modules.setdefault(id(obj), (path, obj))
                self.scan_module_internals(path, obj)
        elif is_onnxruntime_session(obj):
            self._add_session(obj, path)
        elif not issubclass(cls, _OPAQUE_TYPES) and depth < _MAX_DEPTH:
            try:
                children = list(_children(obj, path))
            except Exception as exc:  # team objects may raise anything from __dict__ or __iter__
                self.found.notes.append(f"could not look inside {path} ({cls.__name__}): {exc}")
                return
            for child_path, child in children:
                self.visit(child, child_path, depth + 1)

    def scan_module_internals(self, path: str, module: nn.Module) -> None:
        """Attributes of every submodule that are not registered parameters, buffers or submodules."""
        for name, sub in module.named_modules():
            self.seen.add(id(sub))
            prefix = f"{path}.{name}" if name else path
            for key, value in vars(sub).items():
                if key not in _MODULE_REGISTRIES:
                    self.visit(value, f"{prefix}.{key}", 1)

    def _add_session(self, session: Any, path: str) -> None:
        self.found.sessions.add(id(session))
        model_path = getattr(session, "_model_path", None)
        if model_path:
            self.found.onnx.append((f"ONNX Runtime session {path}", Path(model_path)))
        else:
            self.found.flags.append(f"ONNX Runtime session {path} was built from bytes, so its weights "
                                    f"cannot be located: list the ONNX file in parameter_sources()")


def _children(obj: Any, path: str):
    cls = type(obj)
    if issubclass(cls, dict):
        for key, value in obj.items():
            yield f"{path}[{key!r}]", value
    elif issubclass(cls, (list, tuple, collections.deque)):
        for i, value in enumerate(obj):
            yield f"{path}[{i}]", value
    elif issubclass(cls, (set, frozenset)):
        for value in obj:
            yield f"{path}{{...}}", value
    else:
        attributes = getattr(obj, "__dict__", None)
        if isinstance(attributes, dict):
            for key, value in attributes.items():
                yield f"{path}.{key}", value
        for cls in type(obj).__mro__:
            slots = cls.__dict__.get("__slots__", ())
            for name in [slots] if isinstance(slots, str) else slots:
                if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                    yield f"{path}.{name}", getattr(obj, name)


def root_modules(modules: dict[int, tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    """Found modules that are not inside another found module, in the order they were found."""
    inner: set[int] = set()
    for _, module in modules.values():
        inner.update(id(sub) for sub in module.modules() if sub is not module)
    return [entry for key, entry in modules.items() if key not in inner]
