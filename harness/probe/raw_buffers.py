"""Memory that can hold weights without being a tensor or an array the predictor shows: raw byte buffers
(bytes, bytearray, array.array, mmap, a bare torch storage) and the tensors a TorchScript module keeps in C++.

A team can keep its model as the bytes of a file, an mmap of it, an array.array or a storage with no tensor on
it, and view it as a tensor only inside predict(); or load a TorchScript module, whose parameters, buffers and
tensor attributes live in C++ and are Python objects only while someone asks for them. live_weights finds
these objects by type and asks this module where their memory is.

Where a buffer's memory is comes from the buffer protocol of the built-in type (numpy reads it, no Python
method of the object is called) and, for storages, from torch's C storage type: nothing a team could patch.
The references to torch's C helpers are taken when this module is imported, which the worker does before it
loads any team code.

Raw buffers carry no dtype: each byte counts as one element (int8 weights are the densest a team can use, so
the strict reading). The interpreter and the libraries an honest model imports hold a few hundred small
bytes objects (at most 8 KiB each, 4-13 KiB in all, measured in the worker's process with torch,
transformers and each bundled team loaded). Honest code may still keep some data as bytes (a vocabulary
file read whole: 110 KiB for BERT's Chinese one; the test suite's own process holds 400 KiB of reply
fixtures), so a raw buffer counts whole only from RAW_BUFFER_MIN_BYTES, and the smaller ones together count
beyond SMALL_BUFFERS_ALLOWANCE: spreading weights over many small objects is no way out, and at most 4M int8
parameters hide that way.
"""

from __future__ import annotations

import array
import mmap
from typing import Any, Iterator

import numpy as np
import torch

RAW_BUFFER_MIN_BYTES = 2**20             # 128x the largest bytes object an honest worker holds (8 KiB)
SMALL_BUFFERS_ALLOWANCE = 4 * 2**20      # smaller buffers, summed: honest workers hold 4-13 KiB of them
RAW_BUFFER_TYPES = (bytes, bytearray, array.array, mmap.mmap)

_PARAMETER_DICT = getattr(torch._C, "ParameterDict", None)
_BUFFER_DICT = getattr(torch._C, "BufferDict", None)
_MODULE_DICT = getattr(torch._C, "ModuleDict", None)
_MODULE_ITERATORS = getattr(torch._C, "_jit_debug_module_iterators", None)
SCRIPT_MODULE_TYPE = getattr(torch._C, "ScriptModule", None)


def _untyped_storage_types() -> tuple[type, ...]:
    """torch's untyped storage classes on this torch: UntypedStorage (1.13 and 2.x), _UntypedStorage (1.12)."""
    return tuple(cls for cls in (getattr(torch, "UntypedStorage", None), getattr(torch, "_UntypedStorage", None))
                 if isinstance(cls, type))


UNTYPED_STORAGE_TYPES = _untyped_storage_types()
TYPED_STORAGE_TYPE = getattr(getattr(torch, "storage", None), "TypedStorage", None)
# torch's C storage type (torch._C.StorageBase on 2.x): its data_ptr/nbytes cannot be replaced from Python
_C_STORAGE = next((cls for storage in UNTYPED_STORAGE_TYPES for cls in storage.__mro__
                   if getattr(cls, "__module__", "") == "torch._C" and hasattr(cls, "data_ptr")), None)


def is_raw_buffer_type(cls: type) -> bool:
    return issubclass(cls, RAW_BUFFER_TYPES) or bool(UNTYPED_STORAGE_TYPES) and issubclass(cls, UNTYPED_STORAGE_TYPES)


def is_script_module_type(cls: type) -> bool:
    return SCRIPT_MODULE_TYPE is not None and issubclass(cls, SCRIPT_MODULE_TYPE)


class UnreadableBuffer(Exception):
    """A raw buffer whose memory could not be located without calling the team's code."""


def _overrides_buffer(cls: type, base: type) -> bool:
    """A subclass that defines __buffer__ in Python (3.12+) would run team code when its memory is asked for."""
    return any("__buffer__" in vars(klass) for klass in cls.__mro__ if klass not in (base, object))


def raw_buffer_span(obj: Any) -> tuple[str, int, int, int]:
    """(device, first byte, size in bytes, element size) of a raw buffer or a bare storage.

    array.array keeps its element size (its typecode says what it holds); the others count a byte an element.
    A closed mmap or an empty buffer spans nothing (size 0). Raises UnreadableBuffer where the memory cannot be
    located without calling a method the team could have written."""
    cls = type(obj)
    if UNTYPED_STORAGE_TYPES and issubclass(cls, UNTYPED_STORAGE_TYPES):
        return _storage_span(obj)
    base = next(kind for kind in RAW_BUFFER_TYPES if issubclass(cls, kind))
    if _overrides_buffer(cls, base):
        raise UnreadableBuffer(f"a {cls.__name__} with its own __buffer__")
    try:
        view = np.frombuffer(obj, dtype=np.uint8)
    except (ValueError, TypeError, BufferError):
        return "cpu", 0, 0, 1            # a closed mmap, an empty buffer: no memory to count
    address, nbytes = view.__array_interface__["data"][0], view.nbytes
    del view
    itemsize = array.array.itemsize.__get__(obj) if base is array.array else 1
    return "cpu", address, nbytes, itemsize


def _storage_span(storage: Any) -> tuple[str, int, int, int]:
    if _C_STORAGE is None:
        raise UnreadableBuffer("this torch has no C storage type to read a bare storage with")
    try:
        address = _C_STORAGE.data_ptr(storage)
        nbytes = _C_STORAGE.nbytes(storage) if hasattr(_C_STORAGE, "nbytes") else _C_STORAGE.size(storage)
        device = str(_C_STORAGE.device.__get__(storage)) if hasattr(_C_STORAGE, "device") else "cpu"
    except Exception as exc:
        raise UnreadableBuffer(f"{type(exc).__name__}: {exc}") from None
    return device, address, nbytes, 1


def typed_storage_element_size(referents: list) -> int:
    """A TypedStorage's element size, from the torch.dtype among its referents (what gc sees it hold), so its
    elements count as a tensor's would; 1 when there is none."""
    for referent in referents:
        if type(referent) is torch.dtype:
            try:
                return max(1, int(torch.empty((), dtype=referent).element_size()))
            except Exception:
                return 1
    return 1


def script_module_tensors(module: Any) -> Iterator[torch.Tensor]:
    """Every tensor a TorchScript module holds in C++, submodules included: parameters, buffers and tensor
    attributes (TorchScript keeps a plain tensor attribute as a module attribute, neither of the two)."""
    if _MODULE_ITERATORS is not None:
        try:
            found = _MODULE_ITERATORS(module)
            for key in ("parameters_r", "buffers_r"):
                yield from (t for t in found.get(key, ()) if isinstance(t, torch.Tensor))
            yield from (v for _, v in found.get("named_attributes_r", ()) if isinstance(v, torch.Tensor))
            return
        except Exception:
            pass                 # an older torch without these iterators: walk the dictionaries instead
    if _PARAMETER_DICT is None or _BUFFER_DICT is None or _MODULE_DICT is None:
        return
    stack, seen = [module], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield from (t for _, t in _PARAMETER_DICT(current).items())
        yield from (t for _, t in _BUFFER_DICT(current).items())
        stack.extend(sub for _, sub in _MODULE_DICT(current).items())
