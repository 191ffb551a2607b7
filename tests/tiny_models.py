"""The one tiny test model of the suite: a conv net for trainer, sharding and evaluation tests."""

import flax.linen as nn


class ConvNet(nn.Module):
    """(B, H, W, 3) -> {output: (B, H/4, W/4, out)}: stride-4 stem, two 3x3 convs.

    Wide enough (64 channels) for an FSDP split of its 3x3 kernel; `batch_norm` adds a BatchNorm
    (PyTorch's eps 1e-5, momentum 0.1) after the middle conv, `drop` a dropout after it.
    """

    out: int = 5
    width: int = 64
    drop: float = 0.1
    batch_norm: bool = False
    output: str = "heatmaps"

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.gelu(nn.Conv(self.width, (4, 4), strides=(4, 4))(x))
        # No conv bias before a BatchNorm (it would have an exactly-zero gradient), as in HRNet.
        y = nn.Conv(self.width, (3, 3), use_bias=not self.batch_norm)(x)
        if self.batch_norm:
            y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(y)
        x = nn.Dropout(self.drop, deterministic=not train)(nn.gelu(y))
        return {self.output: nn.Conv(self.out, (3, 3))(x)}
