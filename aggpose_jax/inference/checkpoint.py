"""What a run left for inference: its config (config.json, as plain values) and its best variables.

The app reads runs itself rather than through `aggpose_jax.training` (inference sits beside training
on the import ladder, not above it): a run folder's `config.json` and the variables of `best/` (else
of the latest `checkpoints/` step), or a weights file (a flax msgpack of params or variables, or a
PyTorch state dict converted by the official naming rule).
"""

import json
import pathlib
from typing import Any

import orbax.checkpoint as ocp
from flax import serialization

from aggpose_jax.models import convert

Variables = dict[str, Any]


def read_run_config(run_dir: str | pathlib.Path) -> dict[str, Any]:
    """The run's config.json as nested plain values. Raises FileNotFoundError naming the folder."""
    path = pathlib.Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.json)")
    return json.loads(path.read_text())


def run_variables_dir(run_dir: str | pathlib.Path) -> pathlib.Path:
    """The newest step folder of a run's best/ (else checkpoints/)."""
    root = pathlib.Path(run_dir).absolute()  # orbax restores absolute paths only
    for sub in ("best", "checkpoints"):
        steps = sorted(
            (int(s.name) for s in (root / sub).glob("*") if s.name.isdigit()), reverse=True
        )
        if steps:
            return root / sub / str(steps[0])
    raise FileNotFoundError(f"{run_dir}: a run folder without best/ or checkpoints/ steps")


def _read_orbax(step_dir: pathlib.Path) -> Variables:
    ckptr = ocp.StandardCheckpointer()
    if (step_dir / "variables").exists():
        return ckptr.restore(step_dir / "variables")
    if (step_dir / "params").exists():
        return {"params": ckptr.restore(step_dir / "params")}
    state = ckptr.restore(step_dir / "state")
    return {"params": state["params"], **(state.get("model_state") or {})}


def read_variables(path: str | pathlib.Path) -> Variables:
    """{"params": ..., **model_state} of a run folder, an orbax step folder or a weights file."""
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if (p / "config.json").exists():
        return _read_orbax(run_variables_dir(p))
    if p.is_dir():
        return _read_orbax(p.absolute())
    if p.suffix in (".pth", ".pt", ".bin", ".safetensors", ".npz"):
        return convert.variables_from_torch_names(convert.strip_prefix(convert.load_state_dict(p)))
    try:
        tree = serialization.msgpack_restore(p.read_bytes())
    except Exception as e:  # msgpack raises its own types for a file of something else
        raise ValueError(f"{path}: not a weights file ({type(e).__name__})") from None
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: not a weights file")
    return tree if isinstance(tree.get("params"), dict) else {"params": tree}
