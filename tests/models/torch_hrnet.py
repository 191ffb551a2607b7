"""Test-only oracle: the pose HRNet in PyTorch, written independently from the paper's description.

It keeps the official attribute names (conv1, bn1, layer1, transition<s>, stage<s>.<m>.branches,
fuse_layers, final_layer) so that its `state_dict()` has the official key names and the JAX port is
checked across layouts (NCHW here, NHWC there). Used by tests only; never imported by the package.
"""

import math

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int, stride: int, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


class Basic(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class Bottle(nn.Module):
    def __init__(self, cin: int, planes: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = conv_bn(cin, planes * 4, 1, 1, False) if cin != planes * 4 else None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class HRModule(nn.Module):
    def __init__(self, chans: list[int], blocks: int, multi_scale: bool):
        super().__init__()
        n = len(chans)
        self.branches = nn.ModuleList(
            nn.Sequential(*[Basic(c) for _ in range(blocks)]) for c in chans
        )
        rows = []
        for i in range(n if multi_scale else 1):
            row = []
            for j in range(n):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(chans[j], chans[i], 1, bias=False),
                            nn.BatchNorm2d(chans[i]),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    steps = [
                        conv_bn(chans[j], chans[i] if k == i - j - 1 else chans[j], 3, 2,
                                k < i - j - 1)
                        for k in range(i - j)
                    ]  # fmt: skip
                    row.append(nn.Sequential(*steps))
            rows.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(rows)

    def forward(self, xs):
        xs = [b(x) for b, x in zip(self.branches, xs, strict=True)]
        out = []
        for row in self.fuse_layers:
            y = 0
            for f, x in zip(row, xs, strict=True):
                y = y + (x if f is None else f(x))
            out.append(torch.relu(y))
        return out


class TorchHRNet(nn.Module):
    """Pose HRNet: images (B, 3, H, W) -> heatmaps (B, K, H/4, W/4)."""

    def __init__(self, width=8, num_modules=(1, 1, 2), num_blocks=1, num_keypoints=17):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64)
        self.conv2, self.bn2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(Bottle(64, 64), *[Bottle(256, 64) for _ in range(3)])
        pre = [256]
        for s, mods in enumerate(num_modules):
            chans = [width * 2**b for b in range(s + 2)]
            # Old branches keep their map unless the channels change; the new one comes from the
            # coarsest old branch by one strided conv.
            trans = [
                None if chans[i] == p else conv_bn(p, chans[i], 3, 1, True)
                for i, p in enumerate(pre)
            ]
            trans.append(nn.Sequential(conv_bn(pre[-1], chans[-1], 3, 2, True)))
            setattr(self, f"transition{s + 1}", nn.ModuleList(trans))
            last = s == len(num_modules) - 1
            stage = [HRModule(chans, num_blocks, not (last and m == mods - 1)) for m in range(mods)]
            setattr(self, f"stage{s + 2}", nn.Sequential(*stage))
            pre = chans
        self.final_layer = nn.Conv2d(width, num_keypoints, 1)
        self.num_stages = len(num_modules)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in range(self.num_stages):
            trans = getattr(self, f"transition{s + 1}")
            xs = [
                (xs[i] if t is None else t(xs[i])) if i < len(xs) else t(xs[-1])
                for i, t in enumerate(trans)
            ]
            for module in getattr(self, f"stage{s + 2}"):
                xs = module(xs)
        return self.final_layer(xs[0])


def randomize_(model: nn.Module, seed: int = 0) -> None:
    """Fan-in scaled conv weights, non-trivial BN affines and running statistics (outputs of order 1;
    the official Normal(0, 0.001) init would make them ~1e-6 and hide conversion mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))


def conv_macs(model: nn.Module, images: torch.Tensor) -> int:
    """Multiply-adds of every Conv2d for `images` (weight elements x output positions per image)."""
    total = 0

    def hook(module, _, output):
        nonlocal total
        total += module.weight.numel() * output.shape[2] * output.shape[3]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(images)
    for h in handles:
        h.remove()
    return total
