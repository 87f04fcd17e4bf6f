"""Our own self-attention and YOLOv10 blocks of Ultralytics 8.4.190 (its `nn/modules/block.py`
names), eval-free: the multi-head `Attention` over all positions of a map, the PSA family built
on it (PSABlock, PSA, C2PSA, C2fPSA: YOLOv10 and YOLO11), and YOLOv10's SCDown, RepVGGDW, CIB and
C2fCIB.

Constructor signatures and attribute names are Ultralytics' (its state-dict keys); the forward
passes are written here from the arithmetic each block performs. A width the block cannot work
with raises ValueError where Ultralytics asserts. Test-time fusion (RepVGGDW's folded kernel)
and the export-only attention path are not implemented: they give the same outputs.
"""

from __future__ import annotations

import torch
from torch import nn

from yolodiag.dialects.ultralytics.block import C2f
from yolodiag.dialects.ultralytics.conv import Conv


def _require_same_width(block: str, c1: int, c2: int) -> None:
    # These blocks add or concatenate their halves back to the input width, so c2 has no
    # say: Ultralytics asserts the equality, we refuse with the numbers.
    if c1 != c2:
        raise ValueError(f"{block} keeps its input width: c1={c1} and c2={c2} must be equal")


def _heads_for(width: int) -> int:
    """The head count the PSA family gives Attention: one head per 64 channels, at least one."""
    return max(width // 64, 1)


def _feed_forward(width: int) -> nn.Sequential:
    """Two 1x1 Convs, width -> 2 * width -> width, the second without activation."""
    return nn.Sequential(Conv(width, width * 2, 1), Conv(width * 2, width, 1, act=False))


class Attention(nn.Module):
    """Multi-head self-attention over all H * W positions, plus a depth-wise 3x3 positional
    term on the values: (B, dim, H, W) -> (B, dim, H, W).

    Each head has `head_dim = dim // num_heads` value channels and `key_dim = head_dim *
    attn_ratio` query and key channels; one 1x1 Conv gives, per head, its queries, keys and
    values stacked in that order. Scores are scaled by key_dim ** -0.5 and normalised over the
    attended positions.
    """

    def __init__(self, dim, num_heads=8, attn_ratio=0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim ** -0.5
        qkv_width = dim + 2 * self.key_dim * num_heads
        self.qkv = Conv(dim, qkv_width, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)

    def forward(self, x):
        batch, channels, height, width = x.shape
        per_head = self.qkv(x).view(batch, self.num_heads, 2 * self.key_dim + self.head_dim,
                                    height * width)
        query, key, value = per_head.split((self.key_dim, self.key_dim, self.head_dim), dim=2)
        # weights[b, h, i, j]: how much position i takes from position j; each row sums to 1.
        weights = torch.einsum("bhci,bhcj->bhij", query * self.scale, key).softmax(dim=-1)
        attended = torch.einsum("bhcj,bhij->bhci", value, weights)
        value_map = value.reshape(batch, channels, height, width)
        return self.proj(attended.reshape(batch, channels, height, width) + self.pe(value_map))


class PSABlock(nn.Module):
    """Attention then the two-Conv feed-forward, each added to its input when `shortcut`:
    (B, c, H, W) -> (B, c, H, W)."""

    def __init__(self, c, attn_ratio=0.5, num_heads=4, shortcut=True):
        super().__init__()
        self.attn = Attention(c, attn_ratio=attn_ratio, num_heads=num_heads)
        self.ffn = _feed_forward(c)
        self.add = shortcut

    def forward(self, x):
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class PSA(nn.Module):
    """YOLOv10's position-sensitive attention: a 1x1 Conv splits the input into two halves of
    c1 * e channels; one goes through residual attention and a residual feed-forward, then both
    are joined by a 1x1 Conv back to c1. (B, c1, H, W) -> (B, c1, H, W)."""

    def __init__(self, c1, c2, e=0.5):
        super().__init__()
        _require_same_width("PSA", c1, c2)
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.attn = Attention(self.c, attn_ratio=0.5, num_heads=_heads_for(self.c))
        self.ffn = _feed_forward(self.c)

    def forward(self, x):
        kept, attended = self.cv1(x).split((self.c, self.c), dim=1)
        attended = attended + self.attn(attended)
        attended = attended + self.ffn(attended)
        return self.cv2(torch.cat((kept, attended), 1))


class C2PSA(nn.Module):
    """PSA with a stack of n PSABlocks on the attended half (YOLO11's last backbone layer):
    (B, c1, H, W) -> (B, c1, H, W)."""

    def __init__(self, c1, c2, n=1, e=0.5):
        super().__init__()
        _require_same_width("C2PSA", c1, c2)
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=_heads_for(self.c))
                                 for _ in range(n)))

    def forward(self, x):
        kept, attended = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((kept, self.m(attended)), 1))


class C2fPSA(C2f):
    """C2f whose n inner blocks are PSABlocks: every intermediate map is kept and concatenated.
    (B, c1, H, W) -> (B, c1, H, W)."""

    def __init__(self, c1, c2, n=1, e=0.5):
        _require_same_width("C2fPSA", c1, c2)
        super().__init__(c1, c2, n=n, e=e)
        self.m = nn.ModuleList(PSABlock(self.c, attn_ratio=0.5, num_heads=_heads_for(self.c))
                               for _ in range(n))


class SCDown(nn.Module):
    """Spatial-channel decoupled downsampling: a 1x1 Conv to c2 channels, then a depth-wise
    k x k Conv of stride s without activation. (B, c1, H, W) -> (B, c2, H / s, W / s)."""

    def __init__(self, c1, c2, k, s):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = Conv(c2, c2, k=k, s=s, g=c2, act=False)

    def forward(self, x):
        return self.cv2(self.cv1(x))


class RepVGGDW(nn.Module):
    """SiLU of the sum of a depth-wise 7x7 and a depth-wise 3x3 Conv (both without activation),
    the large-kernel mixer of CIB. The SiLU is fixed: a YAML's `activation:` does not reach it.
    (B, ed, H, W) -> (B, ed, H, W)."""

    def __init__(self, ed):
        super().__init__()
        self.conv = Conv(ed, ed, 7, 1, 3, g=ed, act=False)
        self.conv1 = Conv(ed, ed, 3, 1, 1, g=ed, act=False)
        self.dim = ed
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.conv(x) + self.conv1(x))


class CIB(nn.Module):
    """Compact inverted block: depth-wise 3x3, 1x1 up to 2 * c2 * e, a depth-wise mixer (3x3,
    or RepVGGDW when `lk`), 1x1 down to c2, depth-wise 3x3; added to the input when `shortcut`
    and the widths allow. (B, c1, H, W) -> (B, c2, H, W)."""

    def __init__(self, c1, c2, shortcut=True, e=0.5, lk=False):
        super().__init__()
        inner = 2 * int(c2 * e)
        # Built in the order they run, so a seeded build draws Ultralytics' initial weights.
        self.cv1 = nn.Sequential(Conv(c1, c1, 3, g=c1), Conv(c1, inner, 1),
                                 RepVGGDW(inner) if lk else Conv(inner, inner, 3, g=inner),
                                 Conv(inner, c2, 1), Conv(c2, c2, 3, g=c2))
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv1(x)
        return x + y if self.add else y


class C2fCIB(C2f):
    """C2f whose n inner blocks are CIBs (large-kernel mixer when `lk`).
    (B, c1, H, W) -> (B, c2, H, W)."""

    def __init__(self, c1, c2, n=1, shortcut=False, lk=False, g=1, e=0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(CIB(self.c, self.c, shortcut, e=1.0, lk=lk) for _ in range(n))
