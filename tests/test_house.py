"""House checks: the import ladder (import-linter) and ruff lint."""

import shutil
import subprocess
import sys

from conftest import REPO_ROOT


def _tool(name: str) -> str:
    path = shutil.which(name) or str(REPO_ROOT / ".venv" / "bin" / name)
    return path


def test_import_ladder():
    out = subprocess.run([_tool("lint-imports")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
