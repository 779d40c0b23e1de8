"""The package's shape holds: the layer table, the import cost, the public names, the error tree.

The layer table is the one in ``trio_sse/__init__.py``'s docstring; these tests parse it and
every module's source (with ``ast``: nothing is imported to read an import). Import costs are
measured in a fresh interpreter (a subprocess), since this test session has loaded everything.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

import trio_sse
from trio_sse import _exceptions

PACKAGE_DIR = Path(trio_sse.__file__).resolve().parent

IO_LIBRARIES = frozenset(
    {
        "trio",
        "trio_util",
        "quart",
        "quart_trio",
        "werkzeug",
        "hypercorn",
        "h11",
        "httpx",
        "jwt",
        "prometheus_client",
    }
)

# Imports against the direction that are known and owned by someone; each must still exist
# (so that a fixed one leaves this list) and each says what fixes it.
PENDING_VIOLATIONS: dict[tuple[str, str], str] = {}


# --- the layer table ---------------------------------------------------------------------------


def layer_table() -> list[tuple[str, list[str]]]:
    """The rows of the table in ``trio_sse.__doc__``: (layer name, module patterns), low first."""
    doc = trio_sse.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    rows = [re.fullmatch(r" {4}([a-z-]+) +(\S.*)", line) for line in block.splitlines()]
    assert rows and all(rows), f"cannot read the layer table:\n{block}"
    return [(row[1], row[2].split()) for row in rows if row]


def qualified(pattern: str) -> str:
    return "trio_sse" if pattern == "__init__" else f"trio_sse.{pattern}"


def matches(pattern: str, module: str) -> bool:
    """``pkg.*`` is the package and everything in it; any other entry names one module."""
    name = qualified(pattern)
    if name.endswith(".*"):
        package = name[:-2]
        return module == package or fnmatch.fnmatchcase(module, f"{package}.*")
    return module == name


def package_modules() -> dict[str, Path]:
    """Every module of the package by dotted name, from the files (``__init__`` = the package)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> int:
    rows = enumerate(layer_table())
    found = [i for i, (_, patterns) in rows if any(matches(p, module) for p in patterns)]
    assert len(found) == 1, f"{module} is in {len(found)} rows of the layer table, not exactly one"
    return found[0]


@dataclass(frozen=True)
class Import:
    module: str
    target: str
    line: int


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import of a ``trio_sse`` module in ``path``, wherever it sits (module level,
    function body, ``TYPE_CHECKING`` block, ``try``): all of them count alike."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, *([node.module] if node.module else [])])
            # ``from . import _commands`` imports a module; ``from ._x import name`` imports _x.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "trio_sse" or target.startswith("trio_sse."):
                yield Import(module, target, node.lineno)


def test_every_module_of_the_package_is_in_exactly_one_row_of_the_layer_table() -> None:
    for module in package_modules():
        layer_of(module)


def test_every_module_the_layer_table_names_exists() -> None:
    modules = package_modules()
    for _, patterns in layer_table():
        for pattern in patterns:
            if not pattern.endswith(".*"):
                assert qualified(pattern) in modules, (
                    f"the layer table names a gone module {pattern}"
                )


def test_imports_point_down_the_layer_table() -> None:
    modules = package_modules()
    names = layer_table()
    against = {}
    for module, path in modules.items():
        for imp in imports_of(module, path, set(modules)):
            where = f"{path.relative_to(PACKAGE_DIR.parent)}:{imp.line}"
            assert imp.target in modules, f"{where}: {imp.target} is no module of the package"
            source, target = layer_of(imp.module), layer_of(imp.target)
            if target > source:
                against[(imp.module, imp.target)] = (
                    f"{where}: {imp.module} "
                    f"({names[source][0]}) imports {imp.target} ({names[target][0]})"
                )
    unexplained = [text for key, text in against.items() if key not in PENDING_VIOLATIONS]
    assert unexplained == []
    fixed = [key for key in PENDING_VIOLATIONS if key not in against]
    assert fixed == [], "fixed: remove these from PENDING_VIOLATIONS"


def test_the_layer_check_sees_imports_inside_functions_and_type_checking_blocks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "_sample.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "from .._protocol import SSEEvent\n"
        "if TYPE_CHECKING:\n"
        "    from ..backends import Backend\n"
        "def f():\n"
        "    from . import _routes\n"
        "    import trio_sse._app\n"
        "    from .. import testing, open_broadcaster\n"
    )
    known = {"trio_sse.server._routes", "trio_sse.testing"}
    found = [i.target for i in imports_of("trio_sse.server._sample", path, known)]
    assert found == [
        "trio_sse._protocol",
        "trio_sse.backends",
        "trio_sse.server._routes",
        "trio_sse._app",
        "trio_sse.testing",
        "trio_sse",
    ]


def test_a_module_imported_against_the_direction_is_found() -> None:
    # The check compares rows: the protocol sits below the broadcaster, never above it.
    assert layer_of("trio_sse._protocol._event") < layer_of("trio_sse._broadcaster")
    assert layer_of("trio_sse._exceptions") == 0
    assert layer_of("trio_sse") == len(layer_table()) - 1


# --- import cost -------------------------------------------------------------------------------


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        "import trio_sse.protocol",
        "import trio_sse",
        "from trio_sse.protocol import EventStreamParser, SSEEvent, encode",
        "from trio_sse import SSEEvent, TrioSSEError",
    ],
)
def test_the_sans_io_protocol_and_the_package_top_level_load_no_io_library(
    statement: str,
) -> None:
    loaded = {name.partition(".")[0] for name in modules_loaded_by(statement)}
    assert sorted(loaded & IO_LIBRARIES) == []


def test_a_public_name_loads_its_module_on_first_use() -> None:
    loaded = modules_loaded_by(
        "import trio_sse\nassert 'trio_sse._broadcaster' not in sys.modules\ntrio_sse.Broadcaster"
    )
    assert {"trio_sse._broadcaster", "trio"} <= loaded


# --- the public names --------------------------------------------------------------------------


def lazy_imports_for_type_checkers() -> dict[str, str]:
    """The ``if TYPE_CHECKING:`` imports of ``trio_sse/__init__.py``: name -> module."""
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    found = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        for alias in node.names:
            assert alias.asname == alias.name, "re-export explicitly: `import X as X`"
            found[alias.name] = "." * node.level + (node.module or "")
    return found


def test_type_checkers_see_the_same_lazy_names_as_the_runtime() -> None:
    assert lazy_imports_for_type_checkers() == trio_sse._LAZY


def test_every_public_name_resolves_and_is_listed() -> None:
    eager = {
        name
        for name, value in vars(trio_sse).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    } - {"annotations", "TYPE_CHECKING"}
    assert sorted(trio_sse.__all__) == sorted(eager | set(trio_sse._LAZY))
    for name in trio_sse.__all__:
        assert getattr(trio_sse, name) is not None
    assert set(trio_sse.__all__) <= set(dir(trio_sse))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Brodcaster'"):
        trio_sse.Brodcaster  # type: ignore[attr-defined]  # noqa: B018


# --- the error tree ----------------------------------------------------------------------------


def drawn_tree() -> dict[str, str | None]:
    """The tree in ``_exceptions.py``'s docstring: class name -> parent name."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in (_exceptions.__doc__ or "").splitlines():
        match = re.fullmatch(r" {4}((?:[│ ] {3})*)(?:[├└]── )?([A-Za-z]+)\b.*", line)
        if match is None:
            continue
        depth = len(match[1]) // 4 + (1 if "──" in line else 0)
        del stack[depth:]
        parents[match[2]] = stack[-1] if stack else None
        stack.append(match[2])
    return parents


def code_tree() -> dict[str, str | None]:
    """Every subclass of ``TrioSSEError`` in the package: class name -> parent name."""
    found: dict[str, str | None] = {"TrioSSEError": None}
    pending = [trio_sse.TrioSSEError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("trio_sse"):
                found[sub.__name__] = cls.__name__
                pending.append(sub)
    return found


def test_the_error_tree_drawn_in_the_docstring_is_the_tree_in_the_code() -> None:
    assert drawn_tree() == code_tree()
    assert {"AuthError", "StreamStalled"} <= set(code_tree())


def test_every_error_of_the_tree_is_public_and_defined_with_the_tree() -> None:
    for name in code_tree():
        cls = getattr(trio_sse, name)
        assert cls.__module__ == "trio_sse._exceptions"
        assert name in trio_sse.__all__


def test_errors_stay_importable_from_where_they_were() -> None:
    from trio_sse._auth import AuthError
    from trio_sse._client import StreamStalled

    assert AuthError is trio_sse.AuthError
    assert StreamStalled is trio_sse.StreamStalled


# Exceptions raised in the package that are not in the tree, and why. By name alone for the
# package's own internal signals; by (module, name) for built-ins, so that a new
# ``raise ValueError`` elsewhere is caught.
RAISED_OUTSIDE_THE_TREE: dict[str | tuple[str, str], str] = {
    "StopAsyncIteration": "the async-iterator protocol (Subscription.__anext__)",
    "HTTPError": "the HTTP layer's answer; it becomes a response and never leaves the server",
    "CommandError": "a CLI command's failure; the CLI prints it as the exit message",
    "_ServerError": "the client's record of an HTTP error answer (kept in SSEClient.last_error)",
    "_Disconnected": "the ASGI adapter's signal that the client left; caught in that module",
    "AssertionError": "a broken invariant, or a backend failing the conformance check",
    ("trio_sse", "AttributeError"): "PEP 562: the package has no such public name",
    ("trio_sse.backends", "AttributeError"): "PEP 562: the package has no such public name",
    ("trio_sse._config", "ValueError"): "parse_text's own signal, turned into ConfigError",
    ("trio_sse._config", "TypeError"): "a settings class declared wrongly (a programming error)",
    ("trio_sse._settings_doc", "ValueError"): "the docs lack a table marker (a developer tool)",
    ("trio_sse._protocol._event", "FrozenInstanceError"): "SSEEvent is immutable (as dataclasses)",
    ("trio_sse._history", "ValueError"): "an out-of-order delivery; Broadcaster logs and drops it",
    ("trio_sse.backends._memory", "RuntimeError"): "a programming error: one backend run twice",
    ("trio_sse.backends._redis", "RuntimeError"): "a programming error: one backend run twice",
    ("trio_sse._quart", "RuntimeError"): "a programming error: the API used before serving",
}


def raised_exceptions() -> Iterator[tuple[str, str, int]]:
    """(module, exception name, line) of every ``raise SomeClass...`` in the package."""
    for module, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Attribute) and ast.unparse(exc.value) == "trio":
                continue  # trio's own exceptions, with trio's meaning
            name = exc.attr if isinstance(exc, ast.Attribute) else getattr(exc, "id", "")
            if name.lstrip("_")[:1].isupper():  # a class; not a variable or a factory call
                yield module, name, node.lineno


def test_every_exception_the_package_raises_is_in_the_tree_or_explained() -> None:
    tree = set(code_tree())
    stray = [
        f"{module}:{line} raises {name}"
        for module, name, line in raised_exceptions()
        if name not in tree
        and name not in RAISED_OUTSIDE_THE_TREE
        and (module, name) not in RAISED_OUTSIDE_THE_TREE
    ]
    assert stray == []
