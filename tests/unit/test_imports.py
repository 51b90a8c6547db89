"""pst_core stays free of orchestration and tracking imports (fast to import and test)."""

import subprocess
import sys


def test_pst_core_does_not_import_prefect_or_mlflow():
    """Every module of pst_core imports cleanly; mlflow, vllm and matplotlib load only on use."""
    code = (
        "import sys, pkgutil, importlib, pst_core\n"
        "for m in pkgutil.walk_packages(pst_core.__path__, 'pst_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in ('prefect', 'mlflow', 'typer', 'vllm', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _module_imports(path) -> set[str]:
    """The pst_core modules a module imports at module level, those it names for annotations
    only (``if TYPE_CHECKING:``) included; imports inside functions (on use) are not edges."""
    import ast

    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        body = node.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(
            node.test) else [node]
        for sub in (n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))):
            names = ([a.name for a in sub.names] if isinstance(sub, ast.Import)
                     else [sub.module or ""])
            if isinstance(sub, ast.ImportFrom) and sub.module == "pst_core":
                names = [f"pst_core.{a.name}" for a in sub.names]
            found |= {n for n in names if n.startswith("pst_core")}
    return found


def test_pst_core_has_no_import_circle():
    """Dependencies point one way (method sections below the config, stages below steps, steps
    below recipes below the runner): a circle, even one closed only by an annotation, means
    neither side can be read or tested without the other."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    modules = {}
    for path in (root / "pst_core").rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph = {m: {i for i in _module_imports(p) if i in modules and i != m}
             for m, p in modules.items()}
    done, stack = set(), []

    def visit(module: str) -> None:
        if module in stack:
            circle = [*stack[stack.index(module):], module]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if module in done:
            return
        stack.append(module)
        for target in sorted(graph[module]):
            if not module.startswith(target + "."):  # a package's own __init__ is not a circle
                visit(target)
        stack.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_loading_a_config_loads_no_torch():
    """`pst validate` and every config reader need pydantic, not the models."""
    code = ("import sys, pst_core.config\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
