"""The plate recogniser network: conv stem and a holistic fixed-slot head.

Reads one- and two-line plates whole: the whole feature map is flattened and mapped to
S character slots (optionally after transformer layers over the feature tokens, or
with slot-attention pooling: `head` = "flat" or "attn"); each slot is classified over
the alphabet plus pad (class 0). Output is softmax probabilities [N, S, K] (the ONNX
contract).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Attention(nn.Module):
    """Multi-head attention written with plain matmuls (exports cleanly to ONNX opset 17)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, xq, xkv):
        n, lq, d = xq.shape
        lk = xkv.shape[1]
        hd = d // self.h
        q = self.q(xq).reshape(n, lq, self.h, hd).transpose(1, 2)
        kv = self.kv(xkv).reshape(n, lk, 2, self.h, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        a = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(hd)), dim=-1)
        out = (a @ v).transpose(1, 2).reshape(n, lq, d)
        return self.o(out)


class Block(nn.Module):
    def __init__(self, dim, heads, ffn):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.att = Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))

    def forward(self, x):
        h = self.n1(x)
        x = x + self.att(h, h)
        return x + self.ff(self.n2(x))


class PlateRecogniser(nn.Module):
    def __init__(self, num_classes, slots=10, in_ch=1, in_h=48, in_w=96, dim=96, heads=4, layers=0,
                 head="flat", slot_dim=64, squeeze=32):
        super().__init__()
        self.slots, self.head_kind, self.slot_dim = slots, head, slot_dim
        self.stem = nn.Sequential(
            conv_bn(in_ch, 16, 2),   # H/2
            conv_bn(16, 32, 2),      # H/4
            conv_bn(32, 64, 1),
            conv_bn(64, dim, 2),     # H/8
            conv_bn(dim, dim, 1),
        )
        t = (in_h // 8) * (in_w // 8)
        self.pos = nn.Parameter(torch.randn(1, t, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, 2 * dim) for _ in range(layers)])
        if head == "flat":
            self.squeeze = nn.Sequential(nn.Linear(dim, squeeze), nn.GELU())
            self.to_slots = nn.Sequential(nn.Dropout(0.1), nn.Linear(t * squeeze, slots * slot_dim), nn.GELU())
            self.head = nn.Linear(slot_dim, num_classes)
        else:
            self.norm = nn.LayerNorm(dim)
            self.queries = nn.Parameter(torch.randn(1, slots, dim) * 0.02)
            self.slot_att = Attention(dim, heads)
            self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, num_classes))

    def logits(self, x):
        f = self.stem(x)                                  # N, D, h, w
        tok = f.flatten(2).transpose(1, 2)                # N, T, D
        if len(self.blocks):
            tok = self.blocks(tok + self.pos)
        if self.head_kind == "flat":
            z = self.squeeze(tok).flatten(1)              # N, T*squeeze
            s = self.to_slots(z).reshape(x.shape[0], self.slots, self.slot_dim)
            return self.head(s)                           # N, S, K
        tok = self.norm(tok)
        q = self.queries.expand(x.shape[0], -1, -1)
        s = q + self.slot_att(q, tok)
        return self.head(s)

    def forward(self, x):
        return F.softmax(self.logits(x), dim=-1)


class PlateRecogniserCTC(nn.Module):
    """Reads one- and two-line plates whole with CTC over the plate's two text rows.

    The CNN brings the 48-px-high input down to two feature rows (top and bottom half
    of the plate) of 24 columns; the rows are unfolded into one 48-step sequence, top
    row first, mixed by a transformer layer (so each row knows what the other sees:
    a one-line plate's text spans both rows and must be emitted by only one), and
    every step is classified over the alphabet plus blank (class 0). CTC learns where
    each character sits, so nothing is tied to an absolute slot and line breaks come
    for free: characters emitted from the top row are the top line. Output: softmax
    probabilities [N, 48, K], decoded greedily (collapse repeats, drop blanks).
    """

    def __init__(self, num_classes, in_ch=1, in_h=48, in_w=96, dim=128, heads=4, layers=1, c=(32, 64, 96)):
        super().__init__()
        assert in_h == 48 and in_w % 4 == 0, "the row unfold assumes a 48-px-high input"
        c1, c2, c3 = c
        self.stem = nn.Sequential(
            conv_bn(in_ch, c1, 2),                      # 24 x W/2
            conv_bn(c1, c2, 2),                         # 12 x W/4
            conv_bn(c2, c2, 1),
            _conv_bn_k(c2, c3, (3, 3), (2, 1), (1, 1)),  # 6 x W/4
            conv_bn(c3, c3, 1),
            _conv_bn_k(c3, dim, (3, 3), (3, 1), (0, 1)),  # 2 x W/4: the two text rows
        )
        self.steps = 2 * (in_w // 4)
        self.pos = nn.Parameter(torch.randn(1, self.steps, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, 2 * dim) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def logits(self, x):
        f = self.stem(x)                                # N, D, 2, W'
        seq = f.flatten(2).transpose(1, 2)              # N, 2*W', D (top row, then bottom row)
        seq = self.blocks(seq + self.pos)
        return self.head(self.norm(seq))                # N, T, K

    def forward(self, x):
        return F.softmax(self.logits(x), dim=-1)


def _conv_bn_k(cin, cout, k, s, p):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
