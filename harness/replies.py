"""What a worker says about itself, checked before the host uses it: the parameter report, the environment
and the precision state. Every byte a worker sends is hostile input (the team's code shares its process):
a wrong type, a negative count or an endless list is that side's failure (WorkerFailed, a row), never a
TypeError in the host. Only the fields the host reads are kept, each bounded."""

from __future__ import annotations

from typing import Any

from harness.probe.onnx_sessions import MAX_PROVIDER_CHARS, MAX_PROVIDERS, MAX_SESSIONS
from harness.worker_link import WorkerFailed

MAX_TEXTS = 64                 # flags, notes, sources ... kept per list
MAX_TEXT_CHARS = 2_000         # per string
MAX_FIELDS = 64                # keys of the environment and precision objects
MAX_COUNT = 10**15             # parameters or bytes: a petabyte of weights is no count (sums of a few stay in int64)
REPORT_COUNTS = ("counted", "predictor_visible", "hidden_weights", "params", "onnx_params",
                 "onnx_duplicates_dropped", "unregistered_weights", "buffers", "plain_tensors",
                 "model_file_bytes", "n_modules", "counted_cpu_bytes", "counted_device_bytes",
                 "counted_device_params")
REPORT_TEXTS = ("flags", "notes", "sources", "onnx_files", "hidden_where", "dtypes")


def _count(value: Any, what: str, side: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise WorkerFailed(f"{side} worker's parameter report has {what} = {value!r:.80}, not a count "
                           f"(an integer from 0 to {MAX_COUNT:,})", side)
    return value


def _utf8(text: str) -> str:
    """`text` cut to MAX_TEXT_CHARS, with what UTF-8 cannot encode (lone surrogates, which a JSON frame can
    carry as \\ud800) escaped: result.json is written as UTF-8, and one such character in a flag would stop
    it being written."""
    return text[:MAX_TEXT_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_TEXT_CHARS]


def _texts(value: Any, what: str, side: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise WorkerFailed(f"{side} worker's parameter report has {what} that is not a list of strings", side)
    kept = [_utf8(item) for item in value[:MAX_TEXTS]]
    if len(value) > MAX_TEXTS:
        kept.append(f"... and {len(value) - MAX_TEXTS} more")
    return kept


def param_report(reply: dict[str, Any], side: str) -> dict[str, Any]:
    """The `params` reply's report: `counted` must be a count; other known counts and lists are checked when
    present; anything else is dropped."""
    report = reply.get("report")
    if not isinstance(report, dict):
        raise WorkerFailed(f"{side} worker's parameter report is a {type(report).__name__}, not an object", side)
    checked: dict[str, Any] = {"counted": _count(report.get("counted"), "counted", side)}
    for key in REPORT_COUNTS[1:]:
        if key in report:
            checked[key] = _count(report[key], key, side)
    if checked.get("counted_device_params", 0) > checked["counted"]:
        raise WorkerFailed(f"{side} worker's parameter report has more parameters on the device "
                           f"({checked['counted_device_params']:,}) than counted ({checked['counted']:,})", side)
    for key in REPORT_TEXTS:
        checked[key] = _texts(report.get(key, []), key, side)
    if "onnx_sessions" in report:
        checked["onnx_sessions"] = onnx_sessions(report["onnx_sessions"], side)
    return checked


def _provider_name(value: Any) -> bool:
    """A short string that encodes as UTF-8 (a lone surrogate would stop result.json being written)."""
    if not isinstance(value, str) or len(value) > MAX_PROVIDER_CHARS:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def onnx_sessions(value: Any, side: str) -> list[dict[str, list[str]]]:
    """The report's `onnx_sessions`: [{"providers": [name, ...]}, ...], at most MAX_SESSIONS sessions of at
    most MAX_PROVIDERS short UTF-8 names (harness.probe.onnx_sessions bounds an honest worker's list the same
    way, so anything else is that side's failure). The team's own word: used only for a flag against it."""
    if not isinstance(value, list) or len(value) > MAX_SESSIONS:
        raise WorkerFailed(f"{side} worker's onnx_sessions is not a list of at most {MAX_SESSIONS} sessions", side)
    checked = []
    for session in value:
        providers = session.get("providers") if isinstance(session, dict) else None
        if not isinstance(providers, list) or len(providers) > MAX_PROVIDERS or not all(
                _provider_name(name) for name in providers):
            raise WorkerFailed(f"{side} worker's onnx_sessions has a session whose providers are not a list of at "
                               f"most {MAX_PROVIDERS} names of at most {MAX_PROVIDER_CHARS} characters", side)
        checked.append({"providers": list(providers)})
    return checked


def _scalars(value: Any, what: str, side: str) -> dict[str, Any]:
    """An object of at most MAX_FIELDS string keys and scalar values (strings cut to MAX_TEXT_CHARS)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_FIELDS:
        raise WorkerFailed(f"{side} worker's {what} is not an object of at most {MAX_FIELDS} fields", side)
    kept = {}
    for key, item in value.items():
        if not isinstance(key, str) or not (item is None or isinstance(item, (str, int, float, bool))):
            raise WorkerFailed(f"{side} worker's {what} has a field that is not a plain value", side)
        kept[_utf8(key)] = _utf8(item) if isinstance(item, str) else item
    return kept


def environment(reply: dict[str, Any], side: str) -> dict[str, Any]:
    """The `load` reply's environment (device, torch version, threads ...)."""
    return _scalars(reply.get("environment"), "environment", side)


def precision(reply: dict[str, Any], side: str) -> dict[str, Any]:
    """The `precision` reply's settings."""
    return _scalars(reply.get("precision"), "precision state", side)


def baseline_note(reply: dict[str, Any], side: str) -> str:
    """What `prepare` said about its memory baseline ("" when nothing): a string, bounded."""
    note = reply.get("baseline_note", "")
    if not isinstance(note, str):
        raise WorkerFailed(f"{side} worker's prepare reply has a baseline_note that is not a string", side)
    return _utf8(note)
