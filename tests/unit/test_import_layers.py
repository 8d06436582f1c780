"""harness/ imports only downward through its layers and has no import circle, function-level imports
included; the layers are bench/import_graph.py's LAYERS, which the README's layout section lists."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def load_graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "bench" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", module)
    spec.loader.exec_module(module)
    return module


tool = load_graph_tool()


@pytest.fixture(scope="module")
def graph():
    return tool.import_graph(REPO / "harness")


def test_no_import_circles(graph):
    assert tool.circles(graph) == []


def test_no_import_from_a_higher_layer(graph):
    assert tool.upward_imports(graph, tool.LAYERS) == []


def test_every_module_has_a_layer(graph):
    for module in graph:
        tool.layer_of(module, tool.LAYERS)       # ValueError names one that has none


def readme_layers() -> list[tuple[str, list[str]]]:
    """The layers as the README's layout section lists them: `name  module, module, ...` lines (a line that
    starts with spaces goes on with the layer above), between the line naming the layers and the next blank
    line; `tasks/` is a package, `harness` the package itself, any other name a module of harness/."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("Layers, lowest first", 1)[1].split("```", 2)[1]
    layers: list[tuple[str, list[str]]] = []
    for line in block.strip("\n").splitlines():
        names = line if line.startswith(" ") else line.split(None, 1)[1]
        if not line.startswith(" "):
            layers.append((line.split()[0], []))
        for name in re.split(r",\s*", names.strip().rstrip(",")):
            full = "harness" if name == "harness" else "harness." + name.replace("/", ".")
            layers[-1][1].append(full)
    return layers


def test_the_readme_lists_the_same_layers():
    assert readme_layers() == tool.LAYERS


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_the_tool_finds_a_circle_behind_a_function_level_import_and_an_upward_import(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": "",
        "low.py": "def late():\n    from pkg import high\n",           # hidden from Python until called
        "high.py": "from pkg.low import late\nfrom . import sub\n",
        "sub/__init__.py": "",
        "sub/leaf.py": "import os\nfrom ..low import late\n",            # relative, two levels up
    })
    graph = tool.import_graph(root)
    assert graph == {"pkg": set(), "pkg.low": {"pkg.high"}, "pkg.high": {"pkg.low", "pkg.sub"},
                     "pkg.sub": set(), "pkg.sub.leaf": {"pkg.low"}}
    assert tool.circles(graph) == [["pkg.high", "pkg.low"]]
    # by hand: pkg and pkg.sub import nothing (level 1); the circle high<->low sits on sub (level 2);
    # leaf imports low (level 3)
    assert tool.levels(graph) == {"pkg": 1, "pkg.sub": 1, "pkg.low": 2, "pkg.high": 2, "pkg.sub.leaf": 3}
    layers = [("bottom", ["pkg", "pkg.low", "pkg.sub."]), ("top", ["pkg.high"])]
    assert tool.upward_imports(graph, layers) == [("pkg.low", "pkg.high")]
    assert tool.figures(graph, layers)["imports"] == 4
