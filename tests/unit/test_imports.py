"""httpov's import rule, over every import of every module (function-level included): no cycles; the client side
(client, view, terminal, eta, media, local, web, cli) and the render node (httpov.worker) both import the core,
never each other; the core imports neither; pure modules load nothing of Celery, kombu or redis; only the broker
adapter (httpov.broker, a core module) imports kombu's transport or spells its Redis keys."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import httpov

PACKAGE = Path(httpov.__file__).parent
CLIENT = {"httpov.client", "httpov.view", "httpov.terminal", "httpov.eta", "httpov.media", "httpov.local_farm",
          "httpov.web", "httpov.cli", "httpov.remote"}
PURE = ["httpov.errors", "httpov.text", "httpov.settings", "httpov.limits", "httpov.paths", "httpov.scene",
        "httpov.plan", "httpov.archive", "httpov.files", "httpov.results", "httpov.worker.stitch", "httpov.eta",
        "httpov.options", "httpov.states", "httpov.access", "httpov.user_limits"]
BROKER_LIBRARIES = ("celery", "kombu", "redis")
#: What code spelling one of kombu's Redis keys would contain (httpov.broker builds them all).
KOMBU_WORDS = (":kombu:", "unacked", "\x06\x16", "priority_steps")
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """Every module `module` imports anywhere in its body (a `from httpov import x` counts as httpov.x)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: httpov imports by absolute name"
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return found


def _own(module: str) -> set[str]:
    return {name for name in _imports(module) if name in MODULES and name != module}


def _side(module: str) -> str:
    if module == "httpov.worker" or module.startswith("httpov.worker."):
        return "worker"
    return "client" if module in CLIENT or module.startswith("httpov.web.") else "core"


def test_the_rule_sees_every_module() -> None:
    expected = {"httpov.celery", "httpov.dispatch", "httpov.worker.tasks", "httpov.worker.reaper", "httpov.cli",
                "httpov.broker", "httpov.states", "httpov.store", "httpov.store.jobs", "httpov.store.keys",
                "httpov.store.version"}
    assert expected <= set(MODULES)
    assert {_side(module) for module in MODULES if module.startswith("httpov.store")} == {"core"}
    assert "httpov.worker.batch" in _own("httpov.worker.tasks")
    assert "httpov.broker" in _own("httpov.worker.consumer")
    assert "httpov.dispatch" in _own("httpov.client")  # a function-level import


def test_no_import_cycles() -> None:
    graph = {module: _own(module) for module in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_client_side_and_worker_import_only_the_core_and_their_own_side() -> None:
    allowed = {"core": {"core"}, "client": {"core", "client"}, "worker": {"core", "worker"}}
    wrong = [f"{module} imports {imported}" for module in sorted(MODULES) for imported in sorted(_own(module))
             if _side(imported) not in allowed[_side(module)]]
    assert wrong == []


def test_pure_modules_import_no_broker_library() -> None:
    wrong = [f"{module} imports {name}" for module in PURE for name in sorted(_imports(module))
             if name.split(".")[0] in BROKER_LIBRARIES]
    assert wrong == []
    for module in PURE:  # what they import in turn, too
        code = (f"import sys, json; import {module}; "
                f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {BROKER_LIBRARIES!r})))")
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=PACKAGE.parent)
        assert json.loads(loaded.stdout) == [], module


def test_httpov_itself_loads_nothing() -> None:
    code = "import sys, httpov; print(sorted(m for m in sys.modules if m.startswith('httpov')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert loaded.stdout.strip() == "['httpov']"


def test_only_the_broker_adapter_knows_kombus_redis_layout() -> None:
    """kombu's Redis transport and the names of its keys are httpov.broker's alone (its contract test checks them);
    httpov.celeryconfig sets the transport's options, which the same contract test reads back."""
    wrong = []
    for module in sorted(set(MODULES) - {"httpov.broker", "httpov.celeryconfig"}):
        wrong += [f"{module} imports {name}" for name in sorted(_imports(module)) if name.startswith("kombu.transport")]
        tree = ast.parse(MODULES[module].read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree) if isinstance(node, DOCUMENTED) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if any(word in node.value for word in KOMBU_WORDS):
                    wrong.append(f"{module} spells kombu's key {node.value!r}")
    assert wrong == []
