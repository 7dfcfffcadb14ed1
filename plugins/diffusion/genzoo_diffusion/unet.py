"""A compact UNet for small images, readable in one sitting.

Residual blocks with GroupNorm and a timestep embedding (scale-and-shift), stride-2
downsampling, nearest-neighbour upsampling with skip connections, and self-attention at the
coarsest resolutions. 28x28 digits go 28 -> 14 -> 7 with the default three levels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


#: Scale of the class-label embedding added to the time embedding (see ``UNet.forward``).
LABEL_GAIN = 8.0


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, shape (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch // 4) or 1, ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding as a per-channel scale and shift."""

    def __init__(self, cin: int, cout: int, tdim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(tdim, 2 * cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early steps
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map."""

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x, temb=None):
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2),
                                             v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    """UNet(x_t, t[, label]) -> a tensor shaped like x_t (noise, velocity or x0, per the
    schedule); with ``num_classes`` it also takes class labels.

    ``channels`` gives the width at each resolution level; ``attention`` the levels (0-based)
    that get self-attention; ``blocks`` the residual blocks per level on the way down (the way
    up has one more, to take the extra skip).
    """

    def __init__(self, in_channels: int = 1, channels=(32, 64, 64), blocks: int = 1,
                 attention=(2,), dropout: float = 0.0, heads: int = 4, num_classes: int = 0):
        super().__init__()
        ch0 = channels[0]
        tdim = 4 * ch0
        self.ch0 = ch0
        self.num_classes = num_classes
        self.time = nn.Sequential(nn.Linear(ch0, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        # Class labels join the time embedding; row ``num_classes`` is the "no label" token
        # that classifier-free guidance contrasts with (trained by dropping labels).
        self.label = nn.Embedding(num_classes + 1, tdim) if num_classes else None
        if self.label is not None:
            nn.init.zeros_(self.label.weight)  # start as the unconditional model
        self.stem = nn.Conv2d(in_channels, ch0, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [ch0]
        cur = ch0
        for level, ch in enumerate(channels):
            for _ in range(blocks):
                layer = nn.ModuleList([ResBlock(cur, ch, tdim, dropout)])
                if level in attention:
                    layer.append(Attention(ch, heads))
                self.down.append(layer)
                cur = ch
                skips.append(cur)
            if level < len(channels) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, tdim, dropout), Attention(cur, heads),
                                  ResBlock(cur, cur, tdim, dropout)])
        self.up = nn.ModuleList()
        for level, ch in reversed(list(enumerate(channels))):
            for _ in range(blocks + 1):
                layer = nn.ModuleList([ResBlock(cur + skips.pop(), ch, tdim, dropout)])
                if level in attention:
                    layer.append(Attention(ch, heads))
                self.up.append(layer)
                cur = ch
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                              nn.Conv2d(cur, cur, 3, padding=1)]))
        self.out = nn.Sequential(_norm(cur), nn.SiLU(), nn.Conv2d(cur, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                label: torch.Tensor | None = None) -> torch.Tensor:
        """``label``: (N,) class indices, ``num_classes`` (or None) for "no label"."""
        temb = self.time(timestep_embedding(t, self.ch0))
        if self.label is not None:
            if label is None:
                label = torch.full((x.shape[0],), self.num_classes, device=x.device)
            # the gain lets the zero-initialised table move as fast as the time embedding's
            # scale under Adam (whose steps do not grow with the gradient): without it, 400
            # finetuning steps left every label's effect at chance (measured)
            temb = temb + LABEL_GAIN * self.label(label)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            if isinstance(layer[0], ResBlock):
                for m in layer:
                    h = m(h, temb)
            else:
                h = layer[0](h)
            hs.append(h)
        for m in self.mid:
            h = m(h, temb)
        for layer in self.up:
            if isinstance(layer[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
                for m in layer:
                    h = m(h, temb)
            else:
                h = layer[1](layer[0](h))
                # 7 -> 14 -> 28 is exact; odd sizes are cropped to the skip's size
                h = h[..., :hs[-1].shape[-2], :hs[-1].shape[-1]]
        return self.out(h)
