"""Draws a synthetic plate and photographs it with a simulated traffic camera.

`make_sample(seed, params)` returns an RGB uint8 crop (like a detector's plate crop,
at camera resolution) and its `PlateText`. Everything is deterministic from the seed.
"""

import glob
import io
import math
import os

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import strokefont
from .texts import PlateText, sample_text

# Fonts from Debian packages (licences in models/README.md). Condensed sans faces first.
FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",          # fonts-dejavu-extra
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",     # fonts-dejavu-extra
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Regular.ttf",  # fonts-roboto-unhinted
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Medium.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Light.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",                   # fonts-dejavu-core
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",  # fonts-liberation2
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",                   # fonts-freefont-ttf
    "/usr/share/fonts/truetype/freefont/FreeSansBold.ttf",
]


def available_fonts():
    fonts = [f for f in FONT_CANDIDATES if os.path.exists(f)]
    if not fonts:
        raise RuntimeError("no plate fonts found; install fonts-dejavu-core (see models/README.md)")
    return fonts


_FONT_CACHE = {}


def _font(path, size=64):
    key = (path, size)
    if key not in _FONT_CACHE:
        _FONT_CACHE[key] = ImageFont.truetype(path, size)
    return _FONT_CACHE[key]


DEFAULT_PARAMS = {
    "colour_weights": {"white": 0.72, "yellow": 0.16, "blue": 0.07, "red": 0.05},
    "char_height_px": (7.5, 45.0),  # text height range at camera resolution
    "rotation_deg": 12.0,
    "perspective": 0.10,      # corner jitter, fraction of plate size
    "crop_margin": (-0.03, 0.30),
    "jpeg_quality": (20, 95),
    "p_motion_blur": 0.2,
    "p_defocus": 0.4,
    "p_night_ir": 0.12,
    "p_occlusion": 0.15,
    "p_dirt": 0.5,
    "p_frame": 0.4,
    "p_stroke_font": 0.5,     # synth/strokefont.py instead of a Debian font
}

# plate sizes in mm
PLATE_MM = {"car_long": (520, 110), "car_short": (330, 165), "moto": (190, 140)}


def _render_line(text, font_path, stroke, rng):
    """Tight grayscale mask (float32 0..1) of one text line."""
    font = _font(font_path)
    # letter spacing: draw char by char with a random tracking
    track = rng.uniform(-2, 10)
    widths = []
    for ch in text:
        bb = font.getbbox(ch, stroke_width=stroke)
        widths.append(bb[2] - bb[0] if ch != " " else font.getbbox("0")[2] * 0.5)
    W = int(sum(widths) + track * len(text) + 40 + 4 * stroke)
    H = 110
    img = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(img)
    x = 20.0
    for ch, w in zip(text, widths):
        if ch != " ":
            bb = font.getbbox(ch, stroke_width=stroke)
            d.text((x - bb[0], 20), ch, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
        x += w + track
    a = np.asarray(img)
    ys, xs = np.nonzero(a > 0)
    if len(xs) == 0:
        return np.zeros((10, 10), np.float32)
    # vertical extent from digit height so '-' and '.' keep their place
    bb0 = font.getbbox("0", stroke_width=stroke)
    y0 = 20 + bb0[1]
    y1 = 20 + bb0[3]
    y0 = min(y0, ys.min())
    y1 = max(y1, ys.max() + 1)
    return a[y0:y1, xs.min():xs.max() + 1].astype(np.float32) / 255.0


def _colours(colour, rng):
    j = lambda c, s=12: np.clip(np.array(c, np.float32) + rng.normal(0, s, 3), 0, 255)
    if colour == "white":
        bg, fg = j((238, 238, 235), 10), j((25, 25, 30), 10)
    elif colour == "yellow":
        bg, fg = j((235, 195, 40), 18), j((25, 25, 25), 10)
    elif colour == "blue":
        bg, fg = j((25, 70, 165), 18), j((240, 240, 240), 10)
    else:  # red
        bg, fg = j((190, 35, 35), 18), j((240, 240, 235), 10)
    return bg, fg


def draw_plate(pt: PlateText, rng, params=DEFAULT_PARAMS):
    """Return (RGB float32 image of the flat plate, colour name)."""
    cw = params["colour_weights"]
    names = list(cw)
    colour = names[rng.choice(len(names), p=np.array([cw[n] for n in names]) / sum(cw.values()))]
    kind = "car_long" if pt.layout == "car_long" else ("car_short" if pt.layout == "car_short" else "moto")
    wmm, hmm = PLATE_MM[kind]
    ppm = {"car_long": 0.6, "car_short": 0.8, "moto": 1.0}[kind] * rng.uniform(0.9, 1.1)
    W, H = int(wmm * ppm), int(hmm * ppm)
    bg, fg = _colours(colour, rng)
    fonts = available_fonts()
    font_path = fonts[rng.integers(len(fonts))]
    stroke = int(rng.choice([0, 0, 1, 1, 2, 3]))

    mask = np.zeros((H, W), np.float32)
    if kind == "car_long":
        boxes = [(0.04, 0.11, 0.96, 0.89)]
    elif kind == "car_short":
        boxes = [(0.22, 0.08, 0.78, 0.46), (0.06, 0.53, 0.94, 0.92)]
    else:
        boxes = [(0.08, 0.06, 0.92, 0.47), (0.05, 0.53, 0.95, 0.95)]
    use_stroke_font = rng.random() < params.get("p_stroke_font", 0.0)
    # the stroke font is drawn narrow already; TrueType faces are squeezed to that look
    condense = rng.uniform(0.85, 1.1) if use_stroke_font else rng.uniform(0.55, 0.95)
    for line, (bx0, by0, bx1, by1) in zip(pt.lines, boxes):
        if use_stroke_font:
            m = strokefont.render_line(line, rng)
        else:
            m = _render_line(line, font_path, stroke, rng)
        jit = lambda: rng.uniform(-0.015, 0.015)
        bx0 += jit(); bx1 += jit(); by0 += jit(); by1 += jit()
        bh = int((by1 - by0) * H * rng.uniform(0.9, 1.0))
        bw_max = int((bx1 - bx0) * W)
        bw = int(m.shape[1] * bh / m.shape[0] * condense)
        if len(boxes) == 2 and line is pt.lines[1]:
            bw = max(bw, int(bw_max * rng.uniform(0.85, 1.0)))  # bottom line fills the width
        elif kind == "moto":
            bw = max(bw, int(bw_max * rng.uniform(0.7, 1.0)))   # so does the series line
        elif kind == "car_long":
            bw = max(bw, int(bw_max * rng.uniform(0.8, 1.0)))
        bw = max(4, min(bw, bw_max))
        mr = cv2.resize(m, (bw, bh), interpolation=cv2.INTER_AREA)
        x0 = int((bx0 + bx1) / 2 * W - bw / 2)
        y0 = int((by0 + by1) / 2 * H - bh / 2)
        x0 = max(0, min(W - bw, x0)); y0 = max(0, min(H - bh, y0))
        mask[y0:y0 + bh, x0:x0 + bw] = np.maximum(mask[y0:y0 + bh, x0:x0 + bw], mr)

    # stroke width variation by morphology
    r = rng.random()
    if r < 0.2:
        mask = cv2.erode(mask, np.ones((2, 2), np.uint8))
    elif r < 0.4:
        mask = cv2.dilate(mask, np.ones((2, 2), np.uint8))

    img = np.empty((H, W, 3), np.float32)
    img[:] = bg
    # illumination gradient on the plate
    gx = np.linspace(-1, 1, W)[None, :] * rng.uniform(-0.15, 0.15)
    gy = np.linspace(-1, 1, H)[:, None] * rng.uniform(-0.15, 0.15)
    img *= (1 + gx + gy)[..., None]

    # border
    t = max(1, int(rng.uniform(0.008, 0.02) * H * 2))
    inset = int(rng.uniform(0.01, 0.04) * H)
    if rng.random() < 0.9:
        bmask = np.zeros((H, W), np.uint8)
        cv2.rectangle(bmask, (inset, inset), (W - 1 - inset, H - 1 - inset), 255, t, lineType=cv2.LINE_AA)
        mask = np.maximum(mask, bmask.astype(np.float32) / 255 * rng.uniform(0.7, 1.0))

    # embossing: shadow and highlight shifted copies of the mask
    if rng.random() < 0.8:
        dx, dy = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        sh = np.roll(np.roll(mask, dy, 0), dx, 1)
        hl = np.roll(np.roll(mask, -dy, 0), -dx, 1)
        s = rng.uniform(0.1, 0.35)
        img *= (1 - s * np.clip(sh - mask, 0, 1))[..., None]
        img += (s * 120 * np.clip(hl - mask, 0, 1))[..., None]
    ink = fg * rng.uniform(0.85, 1.1)
    img = img * (1 - mask[..., None]) + ink * mask[..., None]

    # screws
    if rng.random() < 0.7:
        sr = max(2, int(H * rng.uniform(0.025, 0.04)))
        if kind == "moto":
            pts = [(W * 0.2, H * 0.06), (W * 0.8, H * 0.06)]
        elif kind == "car_short":
            pts = [(W * 0.1, H * 0.25), (W * 0.9, H * 0.25)]
        else:
            pts = [(W * 0.035, H * 0.5), (W * 0.965, H * 0.5)]
        for (px, py) in pts:
            c = float(rng.uniform(90, 200))
            cv2.circle(img, (int(px), int(py)), sr, (c, c, c), -1, lineType=cv2.LINE_AA)

    # dirt: low-frequency blotches and specks
    if rng.random() < params["p_dirt"]:
        low = rng.normal(0, 1, (max(2, H // 16), max(2, W // 16))).astype(np.float32)
        low = cv2.resize(low, (W, H), interpolation=cv2.INTER_CUBIC)
        img *= (1 - rng.uniform(0.05, 0.3) * np.clip(low, 0, 2) / 2)[..., None]
        n = int(rng.integers(0, 30))
        for _ in range(n):
            c = float(rng.uniform(40, 160))
            cv2.circle(img, (int(rng.integers(W)), int(rng.integers(H))), int(rng.integers(1, 3)),
                       (c, c * 0.95, c * 0.85), -1)
    return np.clip(img, 0, 255), colour


def _background(h, w, rng):
    """Vehicle-ish surroundings: body colour, gradients, grille bars, clutter."""
    r = rng.random()
    if r < 0.5:  # dark or grey vehicle body / shadow
        base = np.full(3, rng.uniform(0, 110)) + rng.uniform(-10, 10, 3)
    elif r < 0.8:  # light body
        base = np.full(3, rng.uniform(110, 240)) + rng.uniform(-15, 15, 3)
    else:  # coloured body
        base = rng.uniform(0, 255, 3)
    bg = np.empty((h, w, 3), np.float32)
    bg[:] = base
    gy = np.linspace(0, 1, h)[:, None, None] * rng.uniform(-80, 80)
    bg += gy
    n = int(rng.integers(0, 8))
    for _ in range(n):
        c = rng.uniform(0, 255, 3)
        p1 = (int(rng.integers(w)), int(rng.integers(h)))
        p2 = (int(rng.integers(w)), int(rng.integers(h)))
        if rng.random() < 0.5:
            cv2.rectangle(bg, p1, p2, c.tolist(), -1)
        else:
            cv2.line(bg, p1, p2, c.tolist(), int(rng.integers(1, 6)))
    if rng.random() < 0.5:  # dark text-like clutter (dealer frame / sticker letters)
        tm = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 6))):
            cv2.putText(tm, "".join(chr(65 + int(rng.integers(26))) for _ in range(3)),
                        (int(rng.integers(w)), int(rng.integers(h))), cv2.FONT_HERSHEY_SIMPLEX,
                        rng.uniform(0.3, 1.2), 255, int(rng.integers(1, 3)))
        a = (tm.astype(np.float32) / 255)[..., None]
        bg = bg * (1 - a) + a * float(rng.uniform(0, 255))
    bg += rng.standard_normal(bg.shape, dtype=np.float32) * rng.uniform(2, 12)
    return np.clip(bg, 0, 255)


def _motion_kernel(length, angle):
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1
    M = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1)
    k = cv2.warpAffine(k, M, (length, length))
    return k / max(k.sum(), 1e-6)


def photograph(plate, rng, params=DEFAULT_PARAMS):
    """Place the plate in a scene, warp it, crop it like a detector, degrade it."""
    # camera resolution decided first; work at about twice it
    # sampled as character height in pixels, so one- and two-line plates are equally legible
    H, W = plate.shape[:2]
    lo_c, hi_c = params["char_height_px"]
    char_h = math.exp(rng.uniform(math.log(lo_c), math.log(hi_c)))
    frac = 0.70 if W / H > 3 else 0.38
    tw = int(min(320, max(16, char_h / frac * W / H)))
    wp = int(min(W, max(96, 2 * tw)))
    if wp < W:
        plate = cv2.resize(plate, (wp, max(8, int(H * wp / W))), interpolation=cv2.INTER_AREA)
        H, W = plate.shape[:2]
    # optional plate holder frame
    if rng.random() < params["p_frame"]:
        fb = int(rng.uniform(0.03, 0.12) * H)
        fc = rng.uniform(0, 255, 3) if rng.random() < 0.4 else np.full(3, rng.uniform(0, 60))
        framed = np.empty((H + 2 * fb, W + 2 * fb, 3), np.float32)
        framed[:] = fc
        framed[fb:fb + H, fb:fb + W] = plate
        plate = framed
        H, W = plate.shape[:2]

    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    pj = params["perspective"]
    # long plates: the same tilt moves their ends much more; real crops of them are near level
    long_plate = W / H > 3
    rot = params["rotation_deg"] * (0.4 if long_plate else 1.0)
    dst = src + rng.uniform(-pj, pj, (4, 2)).astype(np.float32) * np.float32([W, H * (0.6 if long_plate else 1.0)])
    # rotation about centre
    ang = math.radians(rng.normal(0, rot / 2.5))
    ang = max(-math.radians(rot), min(math.radians(rot), ang))
    c, s = math.cos(ang), math.sin(ang)
    ctr = np.float32([W / 2, H / 2])
    dst = (dst - ctr) @ np.float32([[c, s], [-s, c]]) + ctr
    # yaw-like horizontal squeeze
    dst[:, 0] = (dst[:, 0] - W / 2) * rng.uniform(0.8, 1.05) + W / 2

    # crop like a detector box: around the warped quad, jittered
    x0, y0 = dst[:, 0].min(), dst[:, 1].min()
    x1, y1 = dst[:, 0].max(), dst[:, 1].max()
    bw, bh = x1 - x0, y1 - y0
    lo, hi = params["crop_margin"]
    tight = rng.random() < 0.7
    m = lambda: rng.uniform(lo, hi * (0.4 if tight else 1.0))
    cx0, cx1 = x0 - m() * bw, x1 + m() * bw
    cy0, cy1 = y0 - m() * bh, y1 + m() * bh
    CW, CH = max(8, int(cx1 - cx0)), max(8, int(cy1 - cy0))
    dst = dst - np.float32([cx0, cy0])
    scene = _background(CH, CW, rng)
    M = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(plate, M, (CW, CH), flags=cv2.INTER_LINEAR, borderValue=0)
    pm = cv2.warpPerspective(np.ones((H, W), np.float32), M, (CW, CH), flags=cv2.INTER_LINEAR)
    scene = scene * (1 - pm[..., None]) + warped * pm[..., None]

    # partial occlusion of the plate
    if rng.random() < params["p_occlusion"]:
        x0, y0 = dst[:, 0].min(), dst[:, 1].min()
        x1, y1 = dst[:, 0].max(), dst[:, 1].max()
        side = rng.integers(4)
        f = rng.uniform(0.04, 0.15)
        col = rng.uniform(0, 255, 3).tolist()
        if side == 0:
            cv2.rectangle(scene, (int(x0 - 5), int(y0 - 5)), (int(x0 + f * (x1 - x0)), int(y1 + 5)), col, -1)
        elif side == 1:
            cv2.rectangle(scene, (int(x1 - f * (x1 - x0)), int(y0 - 5)), (int(x1 + 5), int(y1 + 5)), col, -1)
        elif side == 2:
            cv2.rectangle(scene, (int(x0 - 5), int(y1 - f * 0.6 * (y1 - y0))), (int(x1 + 5), int(y1 + 5)), col, -1)
        else:  # thin object (e.g. a cable, a leg) across the plate
            xx = int(rng.uniform(x0, x1))
            cv2.line(scene, (xx, int(y0 - 5)), (xx + int(rng.integers(-20, 20)), int(y1 + 5)), col,
                     max(1, int(0.03 * (x1 - x0))))
    crop = scene

    # exposure
    crop = crop / 255.0
    g = math.exp(rng.normal(0, 0.45))
    crop = np.power(np.clip(crop, 0, 1, dtype=np.float32), np.float32(g))
    crop = crop * rng.uniform(0.55, 1.5) + rng.uniform(-0.15, 0.15)
    if rng.random() < 0.3:  # colour cast
        crop = crop * rng.uniform(0.85, 1.15, 3)
    if rng.random() < params["p_night_ir"]:
        gray = crop.mean(axis=2, keepdims=True)
        gray = np.clip((gray - gray.mean()) * rng.uniform(1.2, 2.5) + gray.mean() + 0.1, 0, 1)
        crop = np.repeat(gray, 3, axis=2)
    crop = np.clip(crop * 255, 0, 255).astype(np.float32)

    # camera resolution: scale to the target width (log-uniform)
    ch, cw = crop.shape[:2]
    th = max(6, int(round(ch * tw / max(cw, 1))))
    # optical blur before sampling, relative to final scale
    sc = tw / cw
    if rng.random() < params["p_defocus"]:
        sig = rng.uniform(0.2, 0.8) / max(sc, 1e-3)
        crop = cv2.GaussianBlur(crop, (0, 0), sig)
    small = cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA)
    if rng.random() < params["p_motion_blur"]:
        L = int(rng.integers(2, 3 + tw // 60))
        small = cv2.filter2D(small, -1, _motion_kernel(L, rng.uniform(0, 180)))
    # sensor noise
    small = small + rng.standard_normal(small.shape, dtype=np.float32) * rng.uniform(0, 12)
    small = np.clip(small, 0, 255).astype(np.uint8)
    # JPEG
    q = int(rng.uniform(*params["jpeg_quality"]))
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, q])
    small = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    # sometimes the crop was saved enlarged (detector crops upscaled for display)
    if rng.random() < 0.3:
        f = rng.uniform(1.5, 4)
        small = cv2.resize(small, (int(tw * f), int(th * f)), interpolation=cv2.INTER_LINEAR)
    return small  # uint8 HxWx3, channel order RGB (we never used BGR semantics)


def make_sample(seed, params=DEFAULT_PARAMS, layout=None):
    """One (RGB uint8 crop, PlateText) pair, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    pt = sample_text(rng, layout)
    plate, _ = draw_plate(pt, rng, params)
    return photograph(plate, rng, params), pt
