"""The shape of the house: thin pages, a Streamlit-free core, a worker that imports without UI."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from core.config import PROJECT_ROOT

FORBIDDEN_IN_UI = {"pymongo", "bson", "gridfs", "redis", "rq", "PIL", "cv2", "fpdf", "av", "secantus"}
UI_FILES = sorted([PROJECT_ROOT / "app.py", PROJECT_ROOT / "server.py", *(PROJECT_ROOT / "pages").glob("*.py"),
                   *(PROJECT_ROOT / "ui").glob("*.py"), *(PROJECT_ROOT / "web").glob("*.py"),
                   *(PROJECT_ROOT / "api").glob("*.py")])


def _imported_roots(path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_pages_and_app_import_no_infrastructure(path):
    assert not (_imported_roots(path) & FORBIDDEN_IN_UI)


def test_http_routes_never_import_streamlit():
    offenders = [str(p.relative_to(PROJECT_ROOT)) for folder in ("web", "api")
                 for p in (PROJECT_ROOT / folder).rglob("*.py") if "streamlit" in _imported_roots(p)]
    assert offenders == []


def test_core_never_imports_streamlit():
    offenders = [str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "core").rglob("*.py")
                 if "streamlit" in _imported_roots(p)]
    assert offenders == []


def test_core_and_worker_import_with_streamlit_unavailable():
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['streamlit'] = None  # any import of it now fails\n"
        "import core\n"
        "mods = [m.name for m in pkgutil.walk_packages(core.__path__, 'core.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "import worker\n"
        "print(len(mods))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 15
