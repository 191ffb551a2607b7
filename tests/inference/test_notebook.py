"""notebooks/colab_quickstart.ipynb runs top to bottom (a short training, as the fixture's)."""

import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_colab_quickstart_executes(tmp_path, monkeypatch, train_steps, xla_flags_one_device):
    monkeypatch.setenv("NOTEBOOK_TRAIN_STEPS", str(train_steps))
    monkeypatch.setenv("XLA_FLAGS", xla_flags_one_device)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(REPO_ROOT / "notebooks" / "colab_quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    outputs = "".join(
        o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
    )
    assert "'AP'" in outputs and "frames, persons, keypoints" in outputs
    assert (tmp_path / "poses" / "baby.npz").exists()
    assert (tmp_path / "poses" / "baby_overlay.mp4").exists()
