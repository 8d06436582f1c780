"""The execution providers of the team's live ONNX Runtime sessions, as the sessions themselves say.

An ONNX team on a GPU box whose sessions run on CPUExecutionProvider (a CPU-only onnxruntime wheel, or a
CUDA provider that failed to load and fell back without a word) is timed as a CPU model against a GPU
reference: on an H200 the bundled onnx_team ran at 0.33x and no row said why. The host flags that
(harness.onnx_providers.onnx_provider_flags) from what this module reports in the worker's params reply.

How sessions are found: every object the garbage collector tracks (frozen ones included), after a
collection, so that a session dropped in a reference cycle does not read as live. ONNX Runtime's Python
``InferenceSession`` is such an object; its C++ half (``onnxruntime.capi.onnxruntime_pybind11_state.
InferenceSession``, the wrapper's ``_sess``) is a pybind11 object the collector does not track, so it is
looked for among the referents of every tracked object too: a team that keeps only ``session._sess`` in
an attribute, a list, a dict or a closure is still seen. A wrapper and its ``_sess`` are one session. Each
session's ``get_providers()`` is read: its providers in order of preference, the first being the one that
runs (most of) the graph.

What cannot be seen: a session held only by C or C++ code (a team's extension module, the ONNX Runtime C
API through ctypes, a pybind11 session kept only inside an untracked container such as a tuple of
untracked objects, whose referents the collector never visits), and sessions in another process (a
server the team started). Those are not listed; an empty list therefore means "none seen", not "none".

This is the team's own word: its code shares the process and can patch ``get_providers`` or the classes
to say anything. It is used only for a flag that works against the team's interest (a CPU-only session
on a GPU box), so a lie can only remove a flag that says the team is slow for a reason of its own making.

Standard library only at import (the host imports the limits below to validate replies); onnxruntime is
never imported here: nothing is looked for unless the process already imported it.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

MAX_SESSIONS = 32              # sessions reported; the host refuses a longer list
MAX_PROVIDERS = 16             # providers per session
MAX_PROVIDER_CHARS = 100       # per provider name (ONNX Runtime's longest is under 40)
_CHUNK = 4096                  # tracked objects whose referents are fetched in one gc call


def _is_session_type(cls: type) -> bool:
    # the same test as live_weights.is_onnxruntime_session_type, kept here so that this module imports no torch
    return str(getattr(cls, "__module__", "")).startswith("onnxruntime") and cls.__name__.endswith("Session")


def _native_half(wrapper: Any) -> Any:
    """The C++ session behind a Python InferenceSession (its ``_sess``), read from its __dict__ without
    calling anything of the team's; None when there is none."""
    try:
        attributes = object.__getattribute__(wrapper, "__dict__")
    except Exception:
        return None
    native = attributes.get("_sess") if isinstance(attributes, dict) else None
    return native if native is not None and _is_session_type(type(native)) else None


def live_sessions(collect: bool = True) -> list[Any]:
    """One object per live ONNX Runtime session (the C++ half where the wrapper has one), in the order the
    collector lists them; [] when onnxruntime was never imported in this process. `collect` False skips the
    collection (about a third of a second in a process that imported transformers) for a caller that has
    just made one."""
    if "onnxruntime" not in sys.modules:
        return []
    gc.unfreeze()        # gc.get_objects() leaves frozen objects out (live_weights.every_tracked_object)
    if collect:
        gc.collect()
    objects = gc.get_objects()
    # by type, a few thousand of them, not by object: a process that imported transformers holds a few
    # hundred thousand objects and several times as many referents
    session_types = {cls for cls in set(map(type, objects)) if _is_session_type(cls)}
    candidates = [obj for obj in objects if type(obj) in session_types] if session_types else []
    for start in range(0, len(objects), _CHUNK):
        referents = gc.get_referents(*objects[start:start + _CHUNK])
        held = {cls for cls in set(map(type, referents)) if _is_session_type(cls)}
        if held:
            candidates.extend(obj for obj in referents if type(obj) in held and not gc.is_tracked(obj))
    del objects
    sessions: dict[int, Any] = {}
    for candidate in candidates:
        native = _native_half(candidate)
        session = candidate if native is None else native
        sessions.setdefault(id(session), session)
    return list(sessions.values())


def _providers(session: Any) -> list[str]:
    """The session's get_providers(), bounded; raises ValueError when it is not a list of strings."""
    providers = session.get_providers()
    if not isinstance(providers, (list, tuple)) or not all(isinstance(p, str) for p in providers):
        raise ValueError(f"get_providers() returned {type(providers).__name__}, not a list of strings")
    return [_utf8(p)[:MAX_PROVIDER_CHARS] for p in providers[:MAX_PROVIDERS]]


def _utf8(text: str) -> str:
    """`text` with anything UTF-8 cannot encode (lone surrogates) escaped: the host refuses such strings."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def session_providers(sessions: list[Any] | None = None, collect: bool = True
                      ) -> tuple[list[dict[str, list[str]]], list[str]]:
    """([{"providers": [...]}, ...] for every live session (or for `sessions`), at most MAX_SESSIONS; notes
    on what was left out).

    A session whose get_providers() raises or answers something other than a list of strings is left out
    and said in a note (the params report's notes); so are sessions past MAX_SESSIONS."""
    sessions = live_sessions(collect) if sessions is None else sessions
    found: list[dict[str, list[str]]] = []
    unreadable: list[str] = []
    for session in sessions:
        try:
            found.append({"providers": _providers(session)})
        except Exception as exc:      # the team's process: anything can be patched, nothing may crash params
            unreadable.append(f"{type(exc).__name__}: {exc}"[:200])
    notes = []
    if unreadable:
        notes.append(f"the execution providers of {len(unreadable)} ONNX Runtime session(s) could not be read "
                     f"({unreadable[0]})")
    if len(found) > MAX_SESSIONS:
        notes.append(f"{len(found) - MAX_SESSIONS} ONNX Runtime session(s) past the first {MAX_SESSIONS} are "
                     "not listed with their providers")
        found = found[:MAX_SESSIONS]
    return found, notes
