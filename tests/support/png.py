"""Smaller screenshots for the docs: Chromium's PNGs rewritten with a palette, in pure Python.

A dashboard screenshot holds a few hundred to a few thousand colours (flat fills, grey text
smoothing), so a palette of 256 of them keeps it exact or nearly so (every other colour becomes
its nearest palette colour) at a third of the size of Chromium's RGB file.
Only what Chromium writes is read: 8-bit RGB or RGBA, not interlaced.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4, 3: 1}  # colour type -> bytes per pixel (8-bit samples)


def _chunks(data: bytes) -> dict[bytes, bytes]:
    """Each chunk type's data (the IDAT chunks joined)."""
    assert data.startswith(SIGNATURE), "not a PNG"
    found: dict[bytes, bytes] = {}
    pos = len(SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        found[kind] = found.get(kind, b"") + data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return found


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytearray:
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return out


def decode(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of an 8-bit RGB, RGBA (alpha dropped) or palette PNG."""
    chunks = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and colour in _CHANNELS and interlace == 0, "unsupported PNG"
    bpp = _CHANNELS[colour]
    pixels = _unfilter(zlib.decompress(chunks[b"IDAT"]), width, height, bpp)
    if colour == 2:
        return width, height, bytes(pixels)
    if colour == 6:
        return width, height, b"".join(pixels[i : i + 3] for i in range(0, len(pixels), 4))
    palette = chunks[b"PLTE"]
    return width, height, b"".join(palette[3 * p : 3 * p + 3] for p in pixels)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _distance(a: bytes, b: bytes) -> int:
    return (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2


def _nearest(colour: bytes, palette: list[bytes]) -> int:
    return min(range(len(palette)), key=lambda i: _distance(colour, palette[i]))


def _palette(counts: Counter[bytes]) -> list[bytes]:
    """256 colours: the 192 most used, then the 64 that the first ones would miss most (pixels
    times distance), so that a small patch of a colour of its own (a thin bar) keeps it."""
    if len(counts) <= 256:
        return list(counts)
    palette = [colour for colour, _ in counts.most_common(192)]
    missed = sorted(
        (colour for colour in counts if colour not in palette[:192]),
        key=lambda c: counts[c] * _distance(c, palette[_nearest(c, palette)]),
        reverse=True,
    )
    return palette + missed[:64]


def to_palette(width: int, height: int, rgb: bytes) -> bytes:
    """A palette PNG of the pixels (`_palette`), every other colour mapped to its nearest."""
    counts = Counter(rgb[i : i + 3] for i in range(0, len(rgb), 3))
    palette = _palette(counts)
    index = {colour: i for i, colour in enumerate(palette)}
    for colour in counts:
        if colour not in index:
            index[colour] = _nearest(colour, palette)
    rows = bytearray()
    for row in range(height):
        start = row * width * 3
        rows.append(0)  # no filter: palette indices of flat areas compress well as they are
        rows += bytes(index[rgb[i : i + 3]] for i in range(start, start + width * 3, 3))
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (
        SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"PLTE", b"".join(palette))
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def shrink(path: Path) -> None:
    """Rewrite the PNG at `path` with a palette, if that makes it smaller."""
    data = path.read_bytes()
    smaller = to_palette(*decode(data))
    if len(smaller) < len(data):
        path.write_bytes(smaller)
