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
          "httpov.web", "httpov.cli", "httpov.remote", "httpov.farm"}
PURE = ["httpov.errors", "httpov.text", "httpov.settings", "httpov.limits", "httpov.paths", "httpov.scene",
        "httpov.plan", "httpov.archive", "httpov.files", "httpov.results", "httpov.worker.stitch", "httpov.eta",
        "httpov.options", "httpov.states", "httpov.access", "httpov.user_limits", "httpov.photons"]
BROKER_LIBRARIES = ("celery", "kombu", "redis")
#: What code spelling one of kombu's Redis keys would contain (httpov.broker builds them all).
KOMBU_WORDS = (":kombu:", "unacked", "\x06\x16", "priority_steps")
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in PACKAGE.rglob("*.py")}


def _lazy_exports() -> list[ast.stmt]:
    """The package's `__getattr__` (`httpov.Farm` imported on first use) and its `if TYPE_CHECKING:` block: not
    imports of the package (nothing imports httpov.farm when httpov is imported), so the rule leaves them out; the
    test below checks what they load."""
    found = [node for node in ast.parse(MODULES["httpov"].read_text()).body
             if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
             or isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"]
    assert len(found) == 2
    return found


def _imports(module: str) -> set[str]:
    """Every module `module` imports anywhere in its body (a `from httpov import x` counts as httpov.x), but for the
    package's lazy exports."""
    found = set()
    tree = ast.parse(MODULES[module].read_text())
    if module == "httpov":
        lazy = {ast.dump(node) for node in _lazy_exports()}
        tree.body = [node for node in tree.body if ast.dump(node) not in lazy]
    for node in ast.walk(tree):
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


def test_the_python_api_loads_on_first_use_without_celery_and_celery_still_finds_its_app() -> None:
    """`from httpov import Farm` (httpov.__getattr__) loads the client side but not Celery (built only to queue
    batches); `celery -A httpov` still finds httpov.celery.app: the package answers no `app` or `celery` of its own."""
    code = ("import sys, json, httpov; from httpov import Farm, Job; "
            "print(json.dumps([Farm.__module__, Job.__module__, sorted({m.split('.')[0] for m in sys.modules} & "
            "{'celery', 'kombu', 'click', 'flask'})]))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert json.loads(loaded.stdout) == ["httpov.farm", "httpov.farm", []]
    code = "from celery.app.utils import find_app; import httpov.celery; print(find_app('httpov') is httpov.celery.app)"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PACKAGE.parent)
    assert found.stdout.strip() == "True"
    assert not hasattr(httpov, "app") and "Farm" in httpov.__all__
    lazy = {n.module for part in _lazy_exports() for n in ast.walk(part) if isinstance(n, ast.ImportFrom)}
    assert lazy == {"httpov.farm"}  # the one module the rule leaves out


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
