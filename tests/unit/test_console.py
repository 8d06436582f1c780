"""Team text on the terminal: never markup, never a control character the terminal would obey."""

import io

import pytest
from rich.console import Console

from harness.check import Verdict
from harness.console import print_team_result, print_verdicts, visible
from harness.records import TaskResult
from harness.results import TeamResult
from harness.spec import load_spec

SPEC = load_spec()
HOSTILE = "[red]boom[/red] [/opt/wheels] \x1b[2J\rover\x07\u202eevil"


@pytest.mark.parametrize("text, shown", [
    ("plain 中文 text", "plain 中文 text"),
    ("line one\n\tline two", "line one\n\tline two"),           # newlines and tabs are kept
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("10%\r100%", "10%\\r100%"),
    ("bell\x07 nul\x00 del\x7f c1\x9b", "bell\\x07 nul\\x00 del\\x7f c1\\x9b"),
    ("\u202eevil", "\\u202eevil"),                              # a bidi override cannot reorder the line
])
def test_visible_writes_control_characters_as_escapes(text, shown):
    assert visible(text) == shown


def _printed(render) -> str:
    out = io.StringIO()
    render(Console(file=out, width=300, force_terminal=False, color_system=None))
    return out.getvalue()


def test_a_team_result_prints_every_team_string_literally():
    result = TeamResult(team=f"team {HOSTILE}", status="probe_failed", backend="local", spec_name="x",
                        spec_sha256="0", error=f"RuntimeError: {HOSTILE}", flags=[f"flag {HOSTILE}"],
                        tasks={"csl": TaskResult.failure(f"task {HOSTILE}")})
    shown = _printed(lambda console: print_team_result(console, result, SPEC))
    escaped = "[red]boom[/red] [/opt/wheels] \\x1b[2J\\rover\\x07\\u202eevil"
    for text in (f"team {escaped}", f"error: RuntimeError: {escaped}", f"flag: flag {escaped}"):
        assert text in shown
    assert "task [red]boom" in shown                           # the table cell folds, but keeps the markup text
    assert not any(c in shown for c in "\x1b\r\x07\u202e")


def test_verdict_details_are_literal():
    shown = _printed(lambda console: print_verdicts(console, [Verdict("params", False, "[bold]12M[/bold]")]))
    assert "[bold]12M[/bold]" in shown and "FAIL" in shown
