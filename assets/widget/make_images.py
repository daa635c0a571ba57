#!/usr/bin/env python3
"""Draws the widget's logos (a note on amohook's blue) at the sizes amoCRM's
and Kommo's widget docs ask for, as PNG, with the standard library only.
Run once; the PNGs are committed and `amohook widget` packs them."""

import struct
import zlib
from pathlib import Path

SIZES = {
    "logo.png": (130, 100),
    "logo_min.png": (84, 84),
    "logo_medium.png": (240, 84),
    "logo_main.png": (400, 272),
    "logo_small.png": (108, 108),
}
BLUE = (31, 94, 196)
WHITE = (255, 255, 255)
LINE = (150, 175, 220)


def pixel(x, y, w, h):
    side = min(w, h)
    nw, nh = int(side * 0.56), int(side * 0.64)
    left, top = (w - nw) // 2, (h - nh) // 2
    if not (left <= x < left + nw and top <= y < top + nh):
        return BLUE
    # Three lines of text on the note.
    for i in range(3):
        ly = top + int(nh * (0.25 + 0.22 * i))
        lw = int(nw * (0.7 if i < 2 else 0.45))
        if ly <= y < ly + max(2, side // 28) and left + nw // 7 <= x < left + nw // 7 + lw:
            return LINE
    return WHITE


def png(w, h):
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y, w, h)) for x in range(w)) for y in range(h)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


here = Path(__file__).parent / "images"
for name, (w, h) in SIZES.items():
    (here / name).write_bytes(png(w, h))
