"""Run logs: JSONL metrics, TensorBoard events, the loss-curve picture, and MFU bookkeeping.

Only process 0 writes. MFU = achieved FLOP/s / peak FLOP/s, where the FLOPs of one step are model FLOPs
(6 x the forward's multiply-adds per image x the global batch, `models.summary.forward_macs`) and the
peak comes from `PEAK_FLOPS` (dense bf16 tensor-core figures of the vendor data sheets). On CPU, or on a
device not in the table, MFU is reported as null.
"""

import json
import pathlib
from typing import Any

import jax

# Dense bf16 peak FLOP/s per device (vendor data sheets, no sparsity).
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "V100": 125e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def device_peak_flops(device: jax.Device | None = None) -> float | None:
    """Peak bf16 FLOP/s of one device, or None (CPU or unknown)."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return None
    kind = device.device_kind
    for name, flops in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return flops
    return None


class MetricWriter:
    """Writes scalars to <workdir>/metrics.jsonl and to TensorBoard event files (process 0 only)."""

    def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
        self.enabled = jax.process_index() == 0
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, scalars: dict[str, float | None]) -> None:
        """One JSON line {"step": step, **scalars}; None values are kept in JSON, skipped in TB."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": int(step), **scalars}) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(
    metrics_path: str | pathlib.Path, out_png: str | pathlib.Path, title: str = ""
) -> bool:
    """Saves the training loss (and AP, if evaluated) against the step. Returns whether it drew."""
    records = read_metrics(metrics_path)
    train = [(r["step"], r["train/loss"]) for r in records if r.get("train/loss") is not None]
    evals = [(r["step"], r["eval/AP"]) for r in records if r.get("eval/AP") is not None]
    if not train:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("joints MSE loss")
    if evals:
        ax2 = ax.twinx()
        ax2.plot(*zip(*evals, strict=True), "o-", color="tab:orange", label="AP")
        ax2.set_ylabel("AP")
        ax2.set_ylim(0, 1)
    ax.set_title(title or "training loss")
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return True
