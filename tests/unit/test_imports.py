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
