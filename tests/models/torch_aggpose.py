"""Test-only oracle: AggPose in PyTorch, written independently from the published architecture description.

It keeps the official conventions on purpose (NCHW input, (B, N, C) token sequences, torch Linear/Conv
layouts and attribute names) so that its `state_dict()` has the official key names and the JAX port is
checked across layouts. Used by tests only; never imported by the package.
"""

import math

import torch
from torch import nn


def randomize_(module: nn.Module, seed: int = 0) -> None:
    """Fan-in scaled random weights and non-trivial biases / LayerNorm affines (outputs of order 1).

    The official init makes the heatmaps ~1e-7, which would hide conversion mistakes in a parity test.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))


def to_map(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def to_seq(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class PatchEmbed(nn.Module):
    def __init__(self, cin, cout, k, s):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, k, s, k // 2)
        self.norm = nn.LayerNorm(cout, eps=1e-5)

    def forward(self, x, h, w):  # tokens at (h, w) -> tokens at the new size
        y = self.proj(to_map(x, h, w) if x.dim() == 3 else x)
        return self.norm(to_seq(y)), y.shape[2], y.shape[3]


class DW(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 3, 1, 1, groups=c)

    def forward(self, x, h, w):
        return to_seq(self.dwconv(to_map(x, h, w)))


class Mlp(nn.Module):
    def __init__(self, cin, hidden, cout):
        super().__init__()
        self.fc1, self.dwconv, self.fc2 = (
            nn.Linear(cin, hidden),
            DW(hidden),
            nn.Linear(hidden, cout),
        )

    def forward(self, x, h, w):
        return self.fc2(nn.functional.gelu(self.dwconv(self.fc1(x), h, w)))


class Upsample(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.mlp, self.s = Mlp(cin, cout, cout), s

    def forward(self, x, h, w):
        y = nn.functional.interpolate(to_map(self.mlp(x, h, w), h, w), scale_factor=self.s)
        return to_seq(y)


class Attention(nn.Module):
    def __init__(self, c, heads, sr):
        super().__init__()
        self.heads, self.sr_ratio = heads, sr
        self.q, self.kv, self.proj = nn.Linear(c, c), nn.Linear(c, 2 * c), nn.Linear(c, c)
        if sr > 1:
            self.sr, self.norm = nn.Conv2d(c, c, sr, sr), nn.LayerNorm(c, eps=1e-5)

    def forward(self, x, h, w):
        b, n, c = x.shape
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.norm(to_seq(self.sr(to_map(x, h, w))))
        kv = self.kv(x).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        att = (q @ kv[0].transpose(-2, -1) * d**-0.5).softmax(-1)
        return self.proj((att @ kv[1]).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, c, heads, sr):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c, eps=1e-6), nn.LayerNorm(c, eps=1e-6)
        self.attn, self.mlp = Attention(c, heads, sr), Mlp(c, 4 * c, c)

    def forward(self, x, h, w):
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class TorchAggPose(nn.Module):
    """Eval-mode AggPose (no drop path). Input NCHW (B, 3, H, W) -> NCHW heatmaps (B, K, H/4, W/4)."""

    GROUPS = (("1", "1_1", "1_2", "1_3"), ("2", "2_1", "2_2"), ("3", "3_1"), ("4",))

    def __init__(self, dims, heads, srs, depths, num_keypoints):
        super().__init__()
        c1, c2, c3, c4 = dims
        for b, names in enumerate(self.GROUPS):
            for k, name in enumerate(names):
                blocks = [Block(dims[b], heads[b], srs[b]) for _ in range(depths[b][k])]
                setattr(self, f"block{name}", nn.ModuleList(blocks))
                setattr(self, f"norm{name}", nn.LayerNorm(dims[b], eps=1e-6))
        pe = {"1": (3, c1, 7, 4), "2": (c1, c2, 3, 2), "3": (c2, c3, 3, 2), "4": (c3, c4, 3, 2),
              "12": (c1, c2, 3, 2), "12k": (c1, c2, 3, 2), "23k": (c2, c3, 3, 2),
              "12kk": (c1, c2, 3, 2), "23kk": (c2, c3, 3, 2), "34kk": (c3, c4, 3, 2)}  # fmt: skip
        for name, args in pe.items():
            setattr(self, f"patch_embed{name}", PatchEmbed(*args))
        ups = {"1_21": (c2, c1, 2), "2_21": (c2, c1, 2), "2_32": (c3, c2, 2), "3_21": (c2, c1, 2),
               "3_32": (c3, c2, 2), "3_43": (c4, c3, 2), "4_21": (c2, c1, 2), "4_31": (c3, c1, 4),
               "4_41": (c4, c1, 8)}  # fmt: skip
        for name, args in ups.items():
            setattr(self, f"upsample{name}", Upsample(*args))
        merges = {"12_1": (2, c1), "12_2": (2, c2), "123_1": (2, c1), "123_2": (3, c2),
                  "123_3": (2, c3), "1234_1": (2, c1), "1234_2": (3, c2), "1234_3": (3, c3),
                  "1234_4": (2, c4)}  # fmt: skip
        for name, (n, c) in merges.items():
            setattr(self, f"merge_{name}", Mlp(n * c, c, c))
        self.final = Mlp(4 * c1, c1, c1)
        self.final_layer = Mlp(c1, c1, num_keypoints)
        randomize_(self)

    def group(self, name, x, h, w):
        for blk in getattr(self, f"block{name}"):
            x = blk(x, h, w)
        return getattr(self, f"norm{name}")(x)

    def merge(self, name, parts, h, w):
        return getattr(self, f"merge_{name}")(torch.cat(parts, dim=-1), h, w)

    def forward(self, img):
        x1, h1, w1 = self.patch_embed1(img, 0, 0)
        x1 = self.group("1", x1, h1, w1)
        x2, h2, w2 = self.patch_embed2(x1, h1, w1)
        x1, x2 = self.group("1_1", x1, h1, w1), self.group("2", x2, h2, w2)
        x3, h3, w3 = self.patch_embed3(x2, h2, w2)
        m1 = self.merge("12_1", [x1, self.upsample1_21(x2, h2, w2)], h1, w1)
        m2 = self.merge("12_2", [x2, self.patch_embed12(x1, h1, w1)[0]], h2, w2)
        x1, x2 = self.group("1_2", m1, h1, w1), self.group("2_1", m2, h2, w2)
        x3 = self.group("3", x3, h3, w3)
        x4, h4, w4 = self.patch_embed4(x3, h3, w3)
        m1 = self.merge("123_1", [x1, self.upsample2_21(x2, h2, w2)], h1, w1)
        m2 = self.merge("123_2", [self.patch_embed12k(x1, h1, w1)[0], x2,
                                  self.upsample2_32(x3, h3, w3)], h2, w2)  # fmt: skip
        m3 = self.merge("123_3", [self.patch_embed23k(x2, h2, w2)[0], x3], h3, w3)
        x1, x2 = self.group("1_3", m1, h1, w1), self.group("2_2", m2, h2, w2)
        x3, x4 = self.group("3_1", m3, h3, w3), self.group("4", x4, h4, w4)
        m1 = self.merge("1234_1", [x1, self.upsample3_21(x2, h2, w2)], h1, w1)
        m2 = self.merge("1234_2", [self.patch_embed12kk(x1, h1, w1)[0], x2,
                                   self.upsample3_32(x3, h3, w3)], h2, w2)  # fmt: skip
        m3 = self.merge("1234_3", [self.patch_embed23kk(x2, h2, w2)[0], x3,
                                   self.upsample3_43(x4, h4, w4)], h3, w3)  # fmt: skip
        m4 = self.merge("1234_4", [self.patch_embed34kk(x3, h3, w3)[0], x4], h4, w4)
        out = torch.cat([m1, self.upsample4_21(m2, h2, w2), self.upsample4_31(m3, h3, w3),
                         self.upsample4_41(m4, h4, w4)], dim=-1)  # fmt: skip
        out = self.final_layer(self.final(out, h1, w1), h1, w1)
        return to_map(out, h1, w1)
