"""Weights the whole worker process holds, beyond what the predictor shows.

The predictor-visible count (params.count_parameters) walks the predictor's attributes and trusts its
``parameter_sources()``. A team can keep a model where no walk from the predictor leads: in a closure cell,
behind a bound method, in a global of some module, created during the first predict() call, or behind
overridden ``parameters()``. So after loading, and again after the timed passes, the worker also looks at
every live object the garbage collector knows and everything those objects refer to, at any depth through
containers it stopped tracking, keeps the torch tensors and numpy arrays that could hold weights (floating
point, quantized, or one-byte integers that a hand-rolled quantization would use; id tables and masks are
left out), raw buffers (bytes, bytearray, array.array, mmap, bare torch storages: raw_buffers) and the
tensors TorchScript modules keep in C++, and measures the memory they span, whole storages at a time, so a
weight hidden as a view of a bigger buffer is not a way out; memory two of them share counts once.

Memory already claimed by the predictor-visible count is subtracted region by region; what is left is
hidden, counted towards the limit and described by where it was found. Nothing a team could call is called
here: only ``type()``, ``gc``, the tensors' own storage pointers, the buffer protocol of built-in types
and torch's C helpers for storages and TorchScript modules. The scan reads storages on torch 1.13
(the offline runner image's) as on 2.x; a weight-like tensor whose storage cannot be read is counted as
unreadable, and the row is flagged: a scan that cannot see never passes silently.
"""

from __future__ import annotations

import gc
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from harness.probe import raw_buffers

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
    nbytes: int = 0                    # host or device bytes the hidden elements span
    host_nbytes: int = 0               # ... of which in host memory


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
_CONTAINERS = (tuple, dict, frozenset, set, list)


def every_tracked_object() -> list[Any]:
    """Every object the garbage collector tracks, frozen ones included: gc.get_objects() leaves out what
    gc.freeze() moved aside (the fork server freezes what its imports made, so that each worker's collections
    skip it; team code could freeze its weights to hide them). Unfrozen first, so nothing is left out."""
    gc.unfreeze()
    return gc.get_objects()


@dataclass
class _Found:
    """Storages found so far: region -> (element size, one holder); raw buffers kept apart (counted after
    the typed ones, so that memory both see counts at the typed element size), small ones summed."""

    typed: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    small_raw: dict = field(default_factory=dict)
    unreadable: list = field(default_factory=list)

    def add(self, storage: tuple[Region, int] | None, holder: Any, raw: bool = False) -> None:
        if storage is None:
            return
        table = self.raw if raw else self.typed
        if storage[0] not in self.typed and storage[0] not in table:
            table[storage[0]] = (storage[1], holder)


def live_storages(unreadable: list[str] | None = None) -> dict[Region, tuple[int, Any]]:
    """Every weight-like storage the garbage collector can reach: region -> (element size, one holder).

    Tensors are tracked by the collector and found among its objects. numpy arrays, raw byte buffers (bytes,
    bytearray, array.array, mmap, bare torch storages) and TorchScript modules' C++ objects are not: they are
    found among the referents of every tracked object and, through containers the collector stopped tracking
    (a tuple or dict whose items are all untracked, such as a tuple of arrays) and the constants of code
    objects (a bytes literal in a function), at any depth. A TorchScript
    module's tensors live in C++ and are asked of it (raw_buffers.script_module_tensors). A process that
    imported transformers holds a few hundred thousand objects, so the scan works on types, not objects
    (``type()`` cannot be lied to, where ``isinstance`` runs torch's metaclass hook for every object), and
    fetches referents a chunk of objects per call; only a chunk that refers to something found is gone
    through object by object, to name its holders.

    Raw buffers count whole from RAW_BUFFER_MIN_BYTES; smaller ones are summed and count beyond
    SMALL_BUFFERS_ALLOWANCE (raw_buffers); typed storages come first in the result, raw ones after."""
    gc.unfreeze()            # a frozen object is never collected: garbage must not read as live weights
    gc.collect()
    found = _Found()
    objects = every_tracked_object()
    kinds = _TypeKinds()
    for obj in objects:
        kind = kinds.of(type(obj))
        if kind == "tensor":
            _add_tensor(found, obj, obj)
        elif kind == "typed_storage":
            referents = gc.get_referents(obj)        # its attributes, or its __dict__ once something read it
            referents += gc.get_referents(*[r for r in referents if type(r) is dict])
            for referent in referents:
                if kinds.of(type(referent)) == "raw":
                    _add_raw(found, referent, obj, raw_buffers.typed_storage_element_size(referents))
        elif kind in ("raw", "script"):
            _add_leaf(found, kinds, obj, obj)
    holders, seen = objects, set()
    while holders:
        deeper = []
        for start in range(0, len(holders), _CHUNK):
            chunk = holders[start:start + _CHUNK]
            referents = gc.get_referents(*chunk)
            leaves = False
            for referent in referents:
                kind = kinds.of(type(referent))
                if kind == "container":
                    if not gc.is_tracked(referent) and id(referent) not in seen:
                        seen.add(id(referent))
                        deeper.append(referent)
                elif kind == "code" and id(referent) not in seen:     # constants: a bytes literal, say
                    seen.add(id(referent))
                    deeper.append(types.CodeType.co_consts.__get__(referent))
                elif kind in ("array", "raw", "script"):
                    leaves = True
            if leaves:
                for holder in chunk:
                    for referent in gc.get_referents(holder):
                        if kinds.of(type(referent)) in ("array", "raw", "script"):
                            _add_leaf(found, kinds, referent, holder)
        holders = deeper
    _count_small_raw(found)
    if unreadable is not None:
        unreadable.extend(found.unreadable)
    return {**found.typed, **{region: value for region, value in found.raw.items() if region not in found.typed}}


class _TypeKinds:
    """What a type is to the scan, decided once per type with issubclass (never isinstance on objects)."""

    def __init__(self):
        self._kinds: dict[type, str] = {}

    def of(self, cls: type) -> str:
        kind = self._kinds.get(cls)
        if kind is None:
            kind = self._kinds[cls] = self._decide(cls)
        return kind

    @staticmethod
    def _decide(cls: type) -> str:
        if issubclass(cls, torch.Tensor):
            return "tensor"
        if issubclass(cls, np.ndarray):
            return "array"
        if raw_buffers.is_raw_buffer_type(cls):
            return "raw"
        if raw_buffers.TYPED_STORAGE_TYPE is not None and issubclass(cls, raw_buffers.TYPED_STORAGE_TYPE):
            return "typed_storage"
        if raw_buffers.is_script_module_type(cls):
            return "script"
        if cls in _CONTAINERS or issubclass(cls, (tuple, dict)):
            return "container"
        if cls is types.CodeType:
            return "code"
        return ""


def _add_tensor(found: _Found, tensor: Any, holder: Any) -> None:
    try:
        found.add(_tensor_storage(tensor), holder)
    except UnreadableStorage as exc:
        found.unreadable.append(str(exc))


def _add_raw(found: _Found, buffer: Any, holder: Any, itemsize: int | None = None) -> None:
    try:
        device, address, nbytes, size = raw_buffers.raw_buffer_span(buffer)
    except raw_buffers.UnreadableBuffer as exc:
        found.unreadable.append(str(exc))
        return
    if not address or not nbytes:
        return
    region = (device, address, address + nbytes)
    if nbytes < raw_buffers.RAW_BUFFER_MIN_BYTES:
        found.small_raw.setdefault(region, (itemsize or size, holder))
    else:
        found.add((region, itemsize or size), holder, raw=itemsize is None)


def _add_leaf(found: _Found, kinds: "_TypeKinds", leaf: Any, holder: Any) -> None:
    kind = kinds.of(type(leaf))
    if kind == "array":
        found.add(_array_storage(leaf), holder)
    elif kind == "raw":
        _add_raw(found, leaf, holder)
    elif kind == "script":
        for tensor in raw_buffers.script_module_tensors(leaf):
            _add_tensor(found, tensor, leaf)


def _count_small_raw(found: _Found) -> None:
    """Small raw buffers count only together, and only beyond SMALL_BUFFERS_ALLOWANCE: honest processes hold
    a few kilobytes of them; a model spread over thousands of small bytes objects is not."""
    small = {region: value for region, value in found.small_raw.items()
             if region not in found.typed and region not in found.raw}
    if sum(high - low for _, low, high in small) > raw_buffers.SMALL_BUFFERS_ALLOWANCE:
        for region, value in small.items():
            found.raw.setdefault(region, value)


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
    """Weight-like elements live in this process outside the `claimed` memory regions. Memory two found
    objects share (an array over a bytes object, a tensor over a bare storage) counts once, at the first
    one's element size: typed storages come first (live_storages)."""
    covered = list(claimed)
    unreadable: list[str] = []
    storages = live_storages(unreadable)
    names = None
    hidden: list[tuple[int, str]] = []
    hidden_bytes = host_bytes = 0
    for region, (itemsize, holder) in storages.items():
        extra_bytes = _uncovered_bytes(region, covered)
        extra = extra_bytes // itemsize
        if extra:
            names = names if names is not None else _holder_names()
            hidden.append((extra, _describe_holder(holder, names)))
            hidden_bytes += extra_bytes
            host_bytes += extra_bytes if region[0] == "cpu" else 0
            covered.append(region)
    hidden.sort(key=lambda item: -item[0])
    where = tuple(f"{n:,} in {holder}" for n, holder in hidden[:_WHERE_SHOWN])
    if len(hidden) > _WHERE_SHOWN:
        where += (f"{sum(n for n, _ in hidden[_WHERE_SHOWN:]):,} in {len(hidden) - _WHERE_SHOWN} more",)
    return HiddenWeights(sum(n for n, _ in hidden), where, len(unreadable), unreadable[0] if unreadable else "",
                         hidden_bytes, host_bytes)


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
