"""The layering of the three packages, checked on their source with `ast`.

- `copernica_api` is the shared client: it imports neither plugin.
- `tap_copernica` and `target_copernica` both build on it and never import each other.
- The import graph among the modules of the three packages has no cycle.
- Retries and response decoding live in `copernica_api` only: just `copernica_api/http.py`
  and `copernica_api/auth.py` import `backoff`, just `copernica_api/payloads.py` decodes
  response bodies (`msgspec.json.decode`), and no plugin module calls `.json()` on a response.
  The target's input reader decodes its stdin lines with a `msgspec.json.Decoder`, which is
  not a response body and is allowed there.

Every import counts wherever it is written: at module level, inside `if TYPE_CHECKING:`,
inside a function or a `try:`. The checks take the project root as an argument, so the tests
at the end run them on small made-up packages to show that each one fails for the wrong thing.
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = "copernica_api"
TAP = "tap_copernica"
TARGET = "target_copernica"
PACKAGES = (CLIENT, TAP, TARGET)

#: Modules allowed to import `backoff` (the retry loops of the HTTP session and of the JWT fetch).
BACKOFF_MODULES = frozenset({"copernica_api.http", "copernica_api.auth"})
#: Other retry libraries: none of the three packages uses them.
OTHER_RETRY_LIBRARIES = ("tenacity", "retrying", "retry", "urllib3.util.retry")
#: The one module that decodes response bodies with `msgspec.json.decode`.
DECODE_MODULES = frozenset({"copernica_api.payloads"})
#: Modules allowed a `msgspec.json.Decoder`: the payload helpers and the target's stdin reader.
DECODER_MODULES = frozenset({"copernica_api.payloads", "target_copernica.reader"})


@dataclass(frozen=True)
class Import:
    """One imported name, resolved to an absolute dotted name."""

    name: str
    line: int


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def top(self) -> str:
        return self.name.partition(".")[0]


def modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    found: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            found[name] = Module(name, path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.package.split(".")
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: Module) -> Iterator[Import]:
    """Every name the module imports, anywhere in its body.

    `from a import b` yields `a.b`, which may be a module or a name defined in `a`;
    `import a.b` yields `a.b`; relative imports are made absolute. String literals passed to
    `importlib.import_module` or `__import__` count as imports too.
    """
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for alias in node.names:
                name = source if alias.name == "*" else f"{source}.{alias.name}"
                yield Import(name, node.lineno)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in {"import_module", "__import__"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield Import(first.value, node.lineno)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def import_graph(found: dict[str, Module]) -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line}, among the given modules only.

    An imported name resolves to the longest known module it starts with, so
    `from tap_copernica.streams import ListStream` is an edge to `tap_copernica.streams`.
    """
    graph: dict[str, dict[str, int]] = {name: {} for name in found}
    for name, module in found.items():
        for imported in imports_of(module):
            parts = imported.name.split(".")
            for end in range(len(parts), 0, -1):
                target = ".".join(parts[:end])
                if target in found:
                    if target != name:
                        graph[name].setdefault(target, imported.line)
                    break
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected component of more than one module (modules that all reach
    each other through imports), with one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan; the graphs here are a few dozen modules deep
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [(component, _cycle_through(graph, component)) for component in components]


def _cycle_through(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """The shortest cycle from the component's first module back to itself (breadth first)."""
    members = set(component)
    start = component[0]
    paths: dict[str, list[str]] = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for successor in sorted(graph[node]):
            if successor == start:
                return [*paths[node], start]
            if successor in members and successor not in paths:
                paths[successor] = [*paths[node], successor]
                queue.append(successor)
    raise AssertionError(f"no cycle through {component}")  # pragma: no cover


def describe_cycle(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    steps = [
        f"{here} (line {graph[here][there]}) -> {there}"
        for here, there in itertools.pairwise(cycle)
    ]
    return "  " + "\n  ".join(steps)


def forbidden_imports(
    found: dict[str, Module], importer: str, forbidden: tuple[str, ...]
) -> list[str]:
    """`module line N: name` for each import by a module of `importer` of a `forbidden` name."""
    return [
        f"{module.name} line {imported.line}: {imported.name}"
        for module in found.values()
        if module.top == importer
        for imported in imports_of(module)
        if any(_within(imported.name, name) for name in forbidden)
    ]


def library_imports(found: dict[str, Module], library: str) -> dict[str, list[int]]:
    """Module -> lines where it imports `library` (or something inside it)."""
    users: dict[str, list[int]] = {}
    for module in found.values():
        lines = sorted({i.line for i in imports_of(module) if _within(i.name, library)})
        if lines:
            users[module.name] = lines
    return users


def _dotted(node: ast.expr) -> str:
    """`a.b.c` for an attribute chain on a plain name, else ''."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def _aliases(module: Module) -> dict[str, str]:
    """Local name -> the absolute name it was imported as (`from msgspec import json` etc.)."""
    names: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def uses_of(module: Module, qualified: str) -> list[int]:
    """Lines where the module refers to `qualified` (e.g. `msgspec.json.decode`), through
    whatever name it imported it under: `msgspec.json.decode`, `json.decode` after
    `from msgspec import json`, `decode` after `from msgspec.json import decode`."""
    aliases = _aliases(module)
    lines: set[int] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if any(f"{node.module}.{alias.name}" == qualified for alias in node.names):
                lines.add(node.lineno)
            continue
        if not isinstance(node, ast.Attribute | ast.Name):
            continue
        dotted = _dotted(node)
        if not dotted:
            continue
        head, _, rest = dotted.partition(".")
        resolved = aliases.get(head)
        if resolved is None:
            continue
        full = f"{resolved}.{rest}" if rest else resolved
        if full == qualified:
            lines.add(node.lineno)
    return sorted(lines)


def response_json_calls(module: Module) -> list[int]:
    """Lines with a `<something>.json()` call: `requests.Response.json`, decoding a body."""
    return sorted(
        node.lineno
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "json"
        and not node.args
        and not node.keywords
    )


# Checks: each returns the list of violations ([] when the rule holds).


def check_no_cycles(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    graph = import_graph(modules(root, packages))
    return [
        f"import cycle among {', '.join(component)}; for example:\n{describe_cycle(graph, cycle)}"
        for component, cycle in cycles(graph)
    ]


def check_client_imports_no_plugin(root: Path = ROOT) -> list[str]:
    return forbidden_imports(modules(root), CLIENT, (TAP, TARGET))


def check_plugins_apart(root: Path = ROOT) -> list[str]:
    found = modules(root)
    return forbidden_imports(found, TAP, (TARGET,)) + forbidden_imports(found, TARGET, (TAP,))


def check_retry_loops(root: Path = ROOT) -> list[str]:
    found = modules(root)
    problems = [
        f"{name} imports backoff (lines {lines}): retries belong to copernica_api.http / .auth"
        for name, lines in library_imports(found, "backoff").items()
        if name not in BACKOFF_MODULES
    ]
    for library in OTHER_RETRY_LIBRARIES:
        problems += [
            f"{name} imports {library} (lines {lines}): retries belong to copernica_api.http"
            for name, lines in library_imports(found, library).items()
        ]
    return problems


def check_response_decoding(root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    for name, module in modules(root).items():
        if name not in DECODE_MODULES and (lines := uses_of(module, "msgspec.json.decode")):
            problems.append(
                f"{name} calls msgspec.json.decode (lines {lines}): "
                "response bodies are decoded by copernica_api.payloads.payload_of"
            )
        if name not in DECODER_MODULES and (lines := uses_of(module, "msgspec.json.Decoder")):
            problems.append(
                f"{name} builds a msgspec.json.Decoder (lines {lines}): only the target's "
                "stdin reader and copernica_api.payloads decode JSON with msgspec"
            )
        if module.top != CLIENT and (lines := response_json_calls(module)):
            problems.append(
                f"{name} calls .json() (lines {lines}): "
                "response bodies are decoded by copernica_api.payloads.payload_of"
            )
    return problems


# The rules on this repository.


def test_the_three_packages_are_there() -> None:
    found = modules()
    for package in PACKAGES:
        assert package in found, f"{package}/__init__.py is missing"
    for name in (*BACKOFF_MODULES, *DECODE_MODULES, *DECODER_MODULES):
        assert name in found, f"{name} named in this test no longer exists: update the test"


def test_import_graph_has_no_cycle() -> None:
    problems = check_no_cycles()
    assert not problems, "\n".join(problems)


def test_client_imports_neither_plugin() -> None:
    problems = check_client_imports_no_plugin()
    assert not problems, "copernica_api must not import a plugin:\n" + "\n".join(problems)


def test_tap_and_target_do_not_import_each_other() -> None:
    problems = check_plugins_apart()
    assert not problems, "the plugins share code only through copernica_api:\n" + "\n".join(
        problems
    )


def test_only_the_client_retries() -> None:
    problems = check_retry_loops()
    assert not problems, "\n".join(problems)
    # The rule is not vacuous: the two retry loops are where they belong.
    assert set(library_imports(modules(), "backoff")) == BACKOFF_MODULES


def test_only_the_client_decodes_responses() -> None:
    problems = check_response_decoding()
    assert not problems, "\n".join(problems)
    found = modules()
    assert uses_of(found["copernica_api.payloads"], "msgspec.json.decode")


# The checks themselves fail for the wrong thing (small made-up packages under tmp_path).


def _package(root: Path, files: dict[str, str]) -> Path:
    for package in PACKAGES:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").touch()
    for relative, source in files.items():
        (root / relative).write_text(textwrap.dedent(source), encoding="utf-8")
    return root


def test_cycle_is_found_and_named(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "tap_copernica/a.py": "from tap_copernica.b import B\n",
            "tap_copernica/b.py": "from . import c\n",
            "tap_copernica/c.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from tap_copernica.a import A
            """,
            "tap_copernica/d.py": "from tap_copernica.a import A\n",
        },
    )
    problems = check_no_cycles(root)
    assert len(problems) == 1
    assert "tap_copernica.a, tap_copernica.b, tap_copernica.c" in problems[0]
    assert "tap_copernica.d" not in problems[0]


def test_cycle_through_an_import_inside_a_function(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "target_copernica/a.py": "import target_copernica.b\n",
            "target_copernica/b.py": """\
                def late():
                    from .a import thing
                    return thing
            """,
        },
    )
    assert check_no_cycles(root)
    assert not check_no_cycles(_package(tmp_path / "ok", {"target_copernica/a.py": "x = 1\n"}))


@pytest.mark.parametrize(
    "source",
    [
        "import tap_copernica.tap\n",
        "from target_copernica import sinks\n",
        "def f():\n    from tap_copernica.streams import X\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import target_copernica\n",
        "import importlib\nm = importlib.import_module('tap_copernica.tap')\n",
    ],
)
def test_client_importing_a_plugin_is_caught(tmp_path: Path, source: str) -> None:
    root = _package(tmp_path, {"copernica_api/bad.py": source})
    assert check_client_imports_no_plugin(root)


def test_plugins_importing_each_other_are_caught(tmp_path: Path) -> None:
    root = _package(tmp_path, {"tap_copernica/bad.py": "from target_copernica.x import y\n"})
    assert check_plugins_apart(root)
    root = _package(tmp_path / "2", {"target_copernica/bad.py": "from tap_copernica import x\n"})
    assert check_plugins_apart(root)
    root = _package(tmp_path / "3", {"target_copernica/ok.py": "from copernica_api import x\n"})
    assert not check_plugins_apart(root)


@pytest.mark.parametrize(
    "source",
    [
        "import backoff\n",
        "from backoff import on_exception\n",
        "def f():\n    import backoff.types\n",
        "from tenacity import retry\n",
        "from urllib3.util.retry import Retry\n",
    ],
)
def test_retry_loop_outside_the_client_is_caught(tmp_path: Path, source: str) -> None:
    root = _package(tmp_path, {"tap_copernica/bad.py": source})
    assert check_retry_loops(root)


def test_backoff_allowed_in_the_client_http_module(tmp_path: Path) -> None:
    root = _package(tmp_path, {"copernica_api/http.py": "import backoff\n"})
    assert not check_retry_loops(root)
    root = _package(tmp_path / "2", {"copernica_api/fields.py": "import backoff\n"})
    assert check_retry_loops(root)


@pytest.mark.parametrize(
    "source",
    [
        "import msgspec\nx = msgspec.json.decode(b'1')\n",
        "from msgspec import json\nx = json.decode(b'1')\n",
        "from msgspec.json import decode\n",
        "import msgspec.json as mj\nx = mj.decode(b'1')\n",
        "import msgspec\nd = msgspec.json.Decoder()\n",
        "def f(response):\n    return response.json()\n",
    ],
)
def test_response_decoding_outside_the_client_is_caught(tmp_path: Path, source: str) -> None:
    root = _package(tmp_path, {"tap_copernica/bad.py": source})
    assert check_response_decoding(root)


def test_decoding_allowed_where_it_belongs(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "copernica_api/payloads.py": "import msgspec\nx = msgspec.json.decode(b'1')\n",
            "copernica_api/errors.py": "def f(r):\n    return r.json()\n",
            "target_copernica/reader.py": "import msgspec\nD = msgspec.json.Decoder()\n",
            "tap_copernica/output.py": "import msgspec\nE = msgspec.json.Encoder()\n",
            "tap_copernica/state.py": "import json\nx = json.loads('1')\n",
        },
    )
    assert not check_response_decoding(root)
    root = _package(
        tmp_path / "2",
        {"target_copernica/reader.py": "import msgspec\nx = msgspec.json.decode(b'1')\n"},
    )
    assert check_response_decoding(root)


def test_emulator_stands_alone() -> None:
    """The emulator is built from the API docs, not from the client it tests: it imports
    neither plugin nor `copernica_api`, and the plugins never import it."""
    found = modules(packages=(CLIENT, TAP, TARGET, "copernica_emulator"))
    problems = forbidden_imports(found, "copernica_emulator", PACKAGES) + [
        problem
        for package in PACKAGES
        for problem in forbidden_imports(found, package, ("copernica_emulator",))
    ]
    assert not problems, "\n".join(problems)
