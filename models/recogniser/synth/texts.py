"""Random Vietnamese plate texts: layouts, series and local codes.

Each sample is a `PlateText`: the layout name, the lines as printed on the plate
(with separators) and the canonical text (0-9, A-Z, Đ only) the recogniser must read.
"""

from dataclasses import dataclass

# Letters used on Vietnamese plates (I, J, O, Q, W are never used; R marks trailers).
PLATE_LETTERS = "ABCDEFGHKLMNPSTUVXYZ"
DIGITS = "0123456789"
ALPHABET = DIGITS + PLATE_LETTERS + "Đ"  # recogniser classes 1..K-1 (0 is pad)
MAX_LEN = 10

# Two-digit local codes (approximate: 11-99 without codes not issued to provinces).
_UNUSED = {13, 42, 44, 45, 46, 87, 91, 96}
LOCAL_CODES = [c for c in range(11, 100) if c not in _UNUSED]
# Big cities get more plates; keep every code possible.
_CITY_CODES = [29, 30, 31, 32, 33, 40, 41, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
               60, 61, 72, 77, 43, 15, 16, 36, 37, 38, 47, 48, 49, 92, 65, 66, 76, 78, 79, 81]

# layout name -> relative frequency in training
LAYOUT_WEIGHTS = {
    "car_long": 0.30,     # one line 520x110 mm: 30A-123.45 / 30A-1234
    "car_short": 0.14,    # two lines 330x165 mm: 30A / 123.45
    "moto_old": 0.34,     # two lines 190x140 mm: 29-B1 / 123.45 (or 1234)
    "moto_new": 0.12,     # 29-HA / 002.33
    "moto_md": 0.10,      # 29-MĐ1 / 123.45
}


@dataclass
class PlateText:
    layout: str
    lines: list          # printed lines, with separators
    canonical: str       # what the recogniser outputs

    @property
    def two_line(self) -> bool:
        return len(self.lines) == 2


def canonical(s: str) -> str:
    """Upper-case and keep only 0-9, A-Z and Đ."""
    s = s.upper().replace("đ", "Đ")
    return "".join(ch for ch in s if ch in DIGITS or ("A" <= ch <= "Z") or ch == "Đ")


# Codes written with one digit twice (11, 22, ... 99). A CTC reader must put a
# blank between two identical neighbours or it reads one: doubled characters
# are drawn more often than chance so the model learns to (see P_REPEAT).
_DOUBLE_CODES = [c for c in LOCAL_CODES if c % 11 == 0]
P_REPEAT = 0.15


def _local(rng) -> str:
    if rng.random() < P_REPEAT:
        c = _DOUBLE_CODES[rng.integers(len(_DOUBLE_CODES))]
    elif rng.random() < 0.5:
        c = _CITY_CODES[rng.integers(len(_CITY_CODES))]
    else:
        c = LOCAL_CODES[rng.integers(len(LOCAL_CODES))]
    return f"{c:02d}"


def _letter(rng) -> str:
    return PLATE_LETTERS[rng.integers(len(PLATE_LETTERS))]


def _digits(rng, n) -> str:
    d = [DIGITS[rng.integers(10)] for _ in range(n)]
    if n > 1 and rng.random() < P_REPEAT:   # a digit doubled (or tripled) somewhere
        i = int(rng.integers(n - 1))
        d[i + 1] = d[i]
    return "".join(d)


def _number(rng, five_prob) -> str:
    """Registration number as printed: 123.45 or 1234."""
    if rng.random() < five_prob:
        d = _digits(rng, 5)
        return d[:3] + "." + d[3:]
    return _digits(rng, 4)


def sample_text(rng, layout=None) -> PlateText:
    """Draw one plate text; `rng` is a numpy Generator."""
    if layout is None:
        names = list(LAYOUT_WEIGHTS)
        p = [LAYOUT_WEIGHTS[n] for n in names]
        layout = names[rng.choice(len(names), p=p)]
    local = _local(rng)
    if layout in ("car_long", "car_short"):
        series = _letter(rng)
        r = rng.random()
        if r < 0.10:
            series += _letter(rng)          # e.g. LD, KT
        elif r < 0.14:
            series += DIGITS[rng.integers(10)]  # e.g. 51B1 (rare, older)
        num = _number(rng, 0.75)
        if layout == "car_long":
            sep = "-" if rng.random() < 0.85 else " "
            lines = [local + series + sep + num]
        else:
            top = local + series + ("-" if rng.random() < 0.3 else "")
            lines = [top, num]
    elif layout == "moto_old":
        series = _letter(rng) + DIGITS[1 + rng.integers(9)]
        lines = [local + _sep(rng) + series, _number(rng, 0.7)]
    elif layout == "moto_new":
        series = _letter(rng) + _letter(rng)
        lines = [local + _sep(rng) + series, _number(rng, 0.9)]
    elif layout == "moto_md":
        series = "MĐ" + DIGITS[1 + rng.integers(9)]
        lines = [local + _sep(rng) + series, _number(rng, 0.9)]
    else:
        raise ValueError(layout)
    return PlateText(layout, lines, canonical("".join(lines)))


def _sep(rng) -> str:
    r = rng.random()
    if r < 0.75:
        return "-"
    if r < 0.9:
        return "·"
    return " "


_LETTER = "[" + PLATE_LETTERS + "]"
_LAYOUT_RE = None


def fits_layout(text: str) -> bool:
    """True when a canonical text fits a civil Vietnamese layout this generator makes:
    2-digit local code, series (1-2 letters, letter+digit, two letters+digit, MĐ+digit),
    then 4 or 5 digits. Used to spot impossible labels in machine-made label files."""
    global _LAYOUT_RE
    if _LAYOUT_RE is None:
        import re
        series = f"({_LETTER}{{1,2}}|{_LETTER}[0-9]|{_LETTER}{{2}}[0-9]|MĐ[0-9]?)"
        _LAYOUT_RE = re.compile(rf"^[0-9]{{2}}{series}[0-9]{{4,5}}$")
    return bool(_LAYOUT_RE.match(text))
