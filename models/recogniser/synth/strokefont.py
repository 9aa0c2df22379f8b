"""A stroke font drawn by this project in the manner of the Vietnamese plate typeface.

Why: the evaluation on real crops showed the reader's worst confusions (1→8, 6→5,
2→7, 7→3/2) come from glyph shapes none of the Debian fonts have: the plate typeface is
a narrow, even-stroke sans whose `1` has a long slanted flag and no foot, whose `6`
and `9` have straight diagonal tails, whose `2` ends in a straight diagonal onto a flat
base, and whose `0` is a tall stadium. No freely licensed font file with those shapes
exists, so the glyphs are described here as centre-lines (polylines and elliptic arcs
in a box 1 high and about 0.56 wide, y pointing down) and drawn with OpenCV at a
random stroke width. Variants (flat-top or round-top `3`, curved or straight `6`/`9`
tail, open or closed `4`) and a small per-stroke jitter and shear keep the reader from learning
one exact outline. The shapes are this project's own work, so the licence is ours.
"""

import math

import cv2
import numpy as np

W = 0.56  # design width of a full glyph


def _arc(cx, cy, rx, ry, a0, a1, n=14):
    """Points on an ellipse from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(a0, a1, n)]


def _stadium(x0, y0, x1, y1):
    r = (x1 - x0) / 2
    cx = (x0 + x1) / 2
    ry = min(r * 1.1, (y1 - y0) / 2)
    return [_arc(cx, y0 + ry, r, ry, 180, 360) + _arc(cx, y1 - ry, r, ry, 0, 180) + [(x0, y0 + ry)]]


def _flip(strokes):
    """Rotate 180° inside the glyph box (6 → 9)."""
    return [[(W - x, 1 - y) for x, y in s] for s in strokes]


def _six(variant):
    loop = _arc(0.28, 0.69, 0.28, 0.31, 0, 360, 24)
    if variant == 0:   # straight diagonal tail
        tail = [(0.47, 0.0), (0.04, 0.58)]
    else:              # curved tail
        tail = _arc(0.30, 0.52, 0.30, 0.52, 300, 180, 12) + [(0.0, 0.69)]
    return [loop, tail]


def glyph(ch, variant=0):
    """Strokes of one character: a list of polylines [(x, y), ...] in the glyph box."""
    v = variant
    if ch == "0":
        return _stadium(0.0, 0.0, W, 1.0)
    if ch == "1":
        flag_y = (0.30, 0.22, 0.38)[v % 3]
        return [[(0.10, flag_y), (0.36, 0.0), (0.36, 1.0)]]
    if ch == "2":
        return [_arc(0.28, 0.27, 0.28, 0.27, 190, 360 + 25) + [(0.0, 1.0), (W, 1.0)]]
    if ch == "3":
        bottom = _arc(0.28, 0.72, 0.28, 0.28, 265, 520)
        if v % 2 == 0:  # flat top
            return [[(0.04, 0.0), (0.52, 0.0), (0.24, 0.44)] + bottom]
        return [_arc(0.27, 0.24, 0.25, 0.24, 195, 450)[:-1] + [(0.22, 0.46)] + bottom]
    if ch == "4":
        if v % 2 == 0:
            return [[(0.42, 1.0), (0.42, 0.0), (0.0, 0.68), (W, 0.68)]]
        return [[(0.30, 0.0), (0.0, 0.66), (W, 0.66)], [(0.42, 0.35), (0.42, 1.0)]]
    if ch == "5":
        return [[(0.52, 0.0), (0.06, 0.0), (0.03, 0.45)] + _arc(0.28, 0.68, 0.28, 0.32, 230, 520)]
    if ch == "6":
        return _six(v % 2)
    if ch == "7":
        return [[(0.0, 0.0), (W, 0.0), (0.16 + 0.06 * (v % 2), 1.0)]]
    if ch == "8":
        return [_arc(0.28, 0.25, 0.24, 0.25, 0, 360, 22), _arc(0.28, 0.73, 0.28, 0.27, 0, 360, 22)]
    if ch == "9":
        return _flip(_six(v % 2))
    if ch == "A":
        return [[(0.0, 1.0), (0.28, 0.0), (W, 1.0)], [(0.1, 0.66), (0.46, 0.66)]]
    if ch == "B":
        return [[(0.0, 0.0), (0.0, 1.0)],
                [(0.0, 0.0), (0.32, 0.0)] + _arc(0.32, 0.24, 0.22, 0.24, 270, 450) + [(0.0, 0.48)],
                [(0.0, 0.48), (0.34, 0.48)] + _arc(0.34, 0.74, 0.22, 0.26, 270, 450) + [(0.0, 1.0)]]
    if ch == "C":
        return [_arc(0.28, 0.5, 0.28, 0.5, 320, 40, 24)]
    if ch in ("D", "Đ"):
        d = [[(0.0, 0.0), (0.0, 1.0), (0.22, 1.0)] + _arc(0.22, 0.5, 0.34, 0.5, 90, -90, 18) + [(0.0, 0.0)]]
        if ch == "Đ":
            d.append([(-0.12, 0.5), (0.2, 0.5)])
        return d
    if ch == "E":
        return [[(0.54, 0.0), (0.0, 0.0), (0.0, 1.0), (0.54, 1.0)], [(0.0, 0.5), (0.44, 0.5)]]
    if ch == "F":
        return [[(0.54, 0.0), (0.0, 0.0), (0.0, 1.0)], [(0.0, 0.5), (0.44, 0.5)]]
    if ch == "G":
        return [_arc(0.28, 0.5, 0.28, 0.5, 315, 0, 24) + [(W, 0.56), (0.30, 0.56)]]
    if ch == "H":
        return [[(0.0, 0.0), (0.0, 1.0)], [(W, 0.0), (W, 1.0)], [(0.0, 0.5), (W, 0.5)]]
    if ch == "K":
        return [[(0.0, 0.0), (0.0, 1.0)], [(W, 0.0), (0.0, 0.62)], [(0.18, 0.46), (W, 1.0)]]
    if ch == "L":
        return [[(0.0, 0.0), (0.0, 1.0), (0.52, 1.0)]]
    if ch == "M":
        return [[(0.0, 1.0), (0.0, 0.0), (0.28, 0.62), (W, 0.0), (W, 1.0)]]
    if ch == "N":
        return [[(0.0, 1.0), (0.0, 0.0), (W, 1.0), (W, 0.0)]]
    if ch == "P":
        return [[(0.0, 1.0), (0.0, 0.0), (0.32, 0.0)] + _arc(0.32, 0.26, 0.24, 0.26, 270, 450) + [(0.0, 0.52)]]
    if ch == "S":
        return [_arc(0.28, 0.26, 0.26, 0.26, 340, 90, 16) + _arc(0.28, 0.74, 0.28, 0.26, 270, 520, 18)]
    if ch == "T":
        return [[(0.0, 0.0), (W, 0.0)], [(0.28, 0.0), (0.28, 1.0)]]
    if ch == "U":
        return [[(0.0, 0.0), (0.0, 0.72)] + _arc(0.28, 0.72, 0.28, 0.28, 180, 0) + [(W, 0.0)]]
    if ch == "V":
        return [[(0.0, 0.0), (0.28, 1.0), (W, 0.0)]]
    if ch == "X":
        return [[(0.0, 0.0), (W, 1.0)], [(W, 0.0), (0.0, 1.0)]]
    if ch == "Y":
        return [[(0.0, 0.0), (0.28, 0.5), (W, 0.0)], [(0.28, 0.5), (0.28, 1.0)]]
    if ch == "Z":
        return [[(0.0, 0.0), (W, 0.0), (0.0, 1.0), (W, 1.0)]]
    if ch == "-":
        return [[(0.0, 0.52), (0.24, 0.52)]]
    if ch == "·":
        return [[(0.04, 0.52), (0.05, 0.52)]]
    if ch == ".":
        return [[(0.04, 0.96), (0.05, 0.96)]]
    raise KeyError(f"no stroke glyph for {ch!r}")


def render_line(text, rng, height=90):
    """Tight grayscale mask (float32 0..1) of one text line in the stroke font.

    Same contract as render._render_line: the vertical extent is the digit height, so
    '-' and '.' keep their place.
    """
    thick = max(3, int(round(height * rng.uniform(0.09, 0.17))))
    inner = height - thick                      # the centre-line box, so strokes stay inside
    xscale = inner * rng.uniform(0.85, 1.15)
    track = inner * rng.uniform(0.08, 0.22)
    jit = 0.015 * inner
    pad = thick + 4
    widths = []
    for ch in text:
        if ch == " ":
            widths.append(0.25 * inner)
        elif ch in "-·.":
            widths.append(0.22 * inner)
        elif ch == "1":
            widths.append(0.40 * xscale)
        else:
            widths.append(W * xscale)
    total = int(sum(widths) + track * max(0, len(text) - 1) + 2 * pad + 0.2 * inner)
    canvas = np.zeros((height + 2 * pad, total), np.uint8)
    x = pad + 0.15 * inner
    variant = int(rng.integers(6))
    for ch, w in zip(text, widths):
        if ch != " ":
            sx = inner * 0.9 if ch in "-·." else xscale
            x0 = x - (0.08 * xscale if ch == "1" else 0.0)
            shear = rng.normal(0, 0.03)
            for stroke in glyph(ch, variant):
                dx, dy = rng.normal(0, jit, 2)   # per stroke, so arcs stay smooth
                pts = np.array([(x0 + (px + shear * (0.5 - py)) * sx + dx, pad + thick / 2 + py * inner + dy)
                                for px, py in stroke], np.float32)
                t = thick + (int(0.4 * thick) if ch in "·." else 0)
                cv2.polylines(canvas, [np.round(pts * 4).astype(np.int32)], False, 255, t, cv2.LINE_AA, shift=2)
        x += w + track
    a = canvas
    ys, xs = np.nonzero(a > 0)
    if len(xs) == 0:
        return np.zeros((10, 10), np.float32)
    y0 = min(pad, ys.min())
    y1 = max(pad + height, ys.max() + 1)
    return a[y0:y1, xs.min():xs.max() + 1].astype(np.float32) / 255.0
