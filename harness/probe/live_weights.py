"""Weights the whole worker process holds, beyond what the predictor shows.

The predictor-visible count (params.count_parameters) walks the predictor's attributes and trusts its
``parameter_sources()``. A team can keep a model where no walk from the predictor leads: in a closure cell,
behind a bound method, in a global of some module, created during the first predict() call, or behind
overridden ``parameters()``. So after loading, and again after the timed passes, the worker also looks at
every live object the garbage collector knows and everything those objects refer to, keeps the torch
tensors and numpy arrays that could hold weights (floating point, quantized, or one-byte integers that a
hand-rolled quantization would use; id tables and masks are left out), and measures the memory they span,
whole storages at a time, so a weight hidden as a view of a bigger buffer is not a way out.

Memory already claimed by the predictor-visible count is subtracted region by region; what is left is
hidden, counted towards the limit and described by where it was found. Nothing a team could call is called
here: only ``type()``, ``gc`` and the tensors' own storage pointers. The scan reads storages on torch 1.13
(the offline runner image's) as on 2.x; a weight-like tensor whose storage cannot be read is counted as
unreadable, and the row is flagged: a scan that cannot see never passes silently.
"""

from __future__ import annotations

import gc
import sys
import types
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

Region = tuple[str, int, int]          # (device, first byte, end byte)
_ONE_BYTE_INTS = {torch.int8, torch.uint8}
_WHERE_SHOWN = 5                       # holders named in the report


@dataclass(frozen=True)
class HiddenWeights:
    """Weight-like elements live in the process but outside the memory the predictor-visible count saw."""

    elements: int
    where: tuple[str, ...]             # the largest hidden storages first: what held them, and their size
    unreadable: int = 0                # dense weight-like tensors whose storage could not be read
    unreadable_why: str = ""           # the first such failure, for the row's flag


class UnreadableStorage(Exception):
    """A dense weight-like tensor whose storage this torch would not give: the scan is incomplete."""


def storage_span(tensor: torch.Tensor) -> tuple[int, int]:
    """(first byte, size in bytes) of the whole storage a tensor views, on every torch the runner may hold:
    ``untyped_storage()`` from torch 2.0, ``storage()`` (a TypedStorage) on 1.13, whose images have no other."""
    if hasattr(tensor, "untyped_storage"):
        storage = tensor.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    storage = tensor.storage()
    nbytes = storage.nbytes() if hasattr(storage, "nbytes") else storage.size() * storage.element_size()
    return storage.data_ptr(), nbytes


def _tensor_storage(tensor: torch.Tensor) -> tuple[Region, int] | None:
    """The whole storage a weight-like tensor views, and its element size; None for other tensors.

    Raises UnreadableStorage for a dense, strided weight-like tensor whose storage cannot be read: that is
    not a tensor without weights but a scan that cannot see, and the caller says so on the row."""
    if not (tensor.is_floating_point() or tensor.is_quantized or tensor.dtype in _ONE_BYTE_INTS):
        return None
    try:
        address, nbytes = storage_span(tensor)
    except Exception as exc:
        if tensor.layout == torch.strided and tensor.device.type != "meta" and not tensor.is_quantized:
            raise UnreadableStorage(f"{type(exc).__name__}: {exc}") from None
        return None        # sparse, meta or quantized layouts without one plain storage
    if not address or not nbytes:
        return None
    return (str(tensor.device), address, address + nbytes), tensor.element_size()


def _array_storage(array: np.ndarray) -> tuple[Region, int] | None:
    """The whole buffer a weight-like numpy array views (its root base array), and its element size."""
    if not (np.issubdtype(array.dtype, np.floating) or array.dtype in (np.int8, np.uint8)):
        return None
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    address = root.__array_interface__["data"][0]
    if not address or not root.nbytes:
        return None
    return ("cpu", address, address + root.nbytes), array.itemsize


def _describe_holder(holder: Any, names: dict[int, str]) -> str:
    if id(holder) in names:
        return names[id(holder)]
    if isinstance(holder, types.CellType):
        return "a closure cell"
    if isinstance(holder, types.FrameType):
        return f"a running frame ({holder.f_code.co_name})"
    return f"a {type(holder).__name__}"


def _holder_names() -> dict[int, str]:
    """Readable names for the dicts that usually hold weights: module globals, nn.Module registries."""
    names = {id(vars(m)): f"globals of module {name}" for name, m in list(sys.modules.items())
             if isinstance(m, types.ModuleType)}
    for obj in every_tracked_object():
        if issubclass(type(obj), nn.Module):
            for registry in ("_parameters", "_buffers"):
                table = obj.__dict__.get(registry)
                if table is not None:
                    names[id(table)] = f"{registry[1:]} of an {type(obj).__name__} module"
    return names


_CHUNK = 4096                          # objects whose referents are fetched in one gc call


def every_tracked_object() -> list[Any]:
    """Every object the garbage collector tracks, frozen ones included: gc.get_objects() leaves out what
    gc.freeze() moved aside (the fork server freezes what its imports made, so that each worker's collections
    skip it; team code could freeze its weights to hide them). Unfrozen first, so nothing is left out."""
    gc.unfreeze()
    return gc.get_objects()


def live_storages(unreadable: list[str] | None = None) -> dict[Region, tuple[int, Any]]:
    """Every weight-like storage the garbage collector can reach: region -> (element size, one holder).

    Tensors are tracked by the collector and found among its objects; numpy arrays are not, so they are
    found among the referents of every tracked object. A process that imported transformers holds a few
    hundred thousand objects, so the scan works on types, not objects (``type()`` cannot be lied to, where
    ``isinstance`` runs torch's metaclass hook for every object), and fetches referents a chunk of objects
    per call; only a chunk that refers to an array is gone through object by object, to name its holders.
    """
    gc.unfreeze()            # a frozen object is never collected: garbage must not read as live weights
    gc.collect()
    found: dict[Region, tuple[int, Any]] = {}
    tensor_types: dict[type, bool] = {}
    array_types: dict[type, bool] = {}

    def is_tensor_type(cls: type) -> bool:
        if cls not in tensor_types:
            tensor_types[cls] = issubclass(cls, torch.Tensor)
        return tensor_types[cls]

    def is_array_type(cls: type) -> bool:
        if cls not in array_types:
            array_types[cls] = issubclass(cls, np.ndarray)
        return array_types[cls]

    def add(storage: tuple[Region, int] | None, holder: Any) -> None:
        if storage is not None and storage[0] not in found:
            found[storage[0]] = (storage[1], holder)

    objects = every_tracked_object()
    for cls in {type(obj) for obj in objects}:
        is_tensor_type(cls)
    for obj in objects:
        if tensor_types[type(obj)]:
            try:
                add(_tensor_storage(obj), obj)
            except UnreadableStorage as exc:
                if unreadable is not None:
                    unreadable.append(str(exc))
    for start in range(0, len(objects), _CHUNK):
        chunk = objects[start:start + _CHUNK]
        if not any(is_array_type(cls) for cls in set(map(type, gc.get_referents(*chunk)))):
            continue
        for holder in chunk:
            for referent in gc.get_referents(holder):
                if is_array_type(type(referent)):
                    add(_array_storage(referent), holder)
    return found


def _uncovered_bytes(region: Region, claimed: list[Region]) -> int:
    """Bytes of `region` that no claimed region covers."""
    device, low, high = region
    spans = sorted((max(low, c_low), min(high, c_high)) for c_dev, c_low, c_high in claimed
                   if c_dev == device and c_low < high and c_high > low)
    covered, cursor = 0, low
    for start, end in spans:
        start = max(start, cursor)
        if end > start:
            covered += end - start
            cursor = end
    return (high - low) - covered


def hidden_weights(claimed: Iterable[Region]) -> HiddenWeights:
    """Weight-like elements live in this process outside the `claimed` memory regions."""
    claimed = list(claimed)
    unreadable: list[str] = []
    storages = live_storages(unreadable)
    names = None
    hidden: list[tuple[int, str]] = []
    for region, (itemsize, holder) in storages.items():
        extra = _uncovered_bytes(region, claimed) // itemsize
        if extra:
            names = names if names is not None else _holder_names()
            hidden.append((extra, _describe_holder(holder, names)))
    hidden.sort(key=lambda item: -item[0])
    where = tuple(f"{n:,} in {holder}" for n, holder in hidden[:_WHERE_SHOWN])
    if len(hidden) > _WHERE_SHOWN:
        where += (f"{sum(n for n, _ in hidden[_WHERE_SHOWN:]):,} in {len(hidden) - _WHERE_SHOWN} more",)
    return HiddenWeights(sum(n for n, _ in hidden), where, len(unreadable), unreadable[0] if unreadable else "")


def is_onnxruntime_session_type(cls: type) -> bool:
    return str(getattr(cls, "__module__", "")).startswith("onnxruntime") and cls.__name__.endswith("Session")


def is_onnxruntime_session(obj: Any) -> bool:
    return is_onnxruntime_session_type(type(obj))


def live_onnx_sessions() -> list[Any]:
    """Every ONNX Runtime session object alive in the process (their weights live in C++ memory). Checked by
    type, as live_storages does: a few hundred types, not a few hundred thousand objects."""
    objects = every_tracked_object()
    session_types = {cls for cls in set(map(type, objects)) if is_onnxruntime_session_type(cls)}
    return [obj for obj in objects if type(obj) in session_types] if session_types else []
