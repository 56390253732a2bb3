"""A tiny raster canvas and PNG encoder (zlib only): enough to draw a chart without a plotting library.

:class:`Canvas` holds RGB pixels and draws rectangles and text in a built-in 3x5 pixel font
(digits, lower-case letters and a little punctuation, scaled up); :func:`encode_png` writes an
8-bit RGB PNG (one IDAT chunk, no filtering), which every viewer and browser reads.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["Canvas", "Color", "encode_png"]

Color = tuple[int, int, int]
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 3 columns x 5 rows per glyph, "#" inked; upper case is drawn as lower case.
_GLYPHS: dict[str, str] = {
    "0": "### #.# #.# #.# ###", "1": ".#. ##. .#. .#. ###", "2": "### ..# ### #.. ###",
    "3": "### ..# .## ..# ###", "4": "#.# #.# ### ..# ..#", "5": "### #.. ### ..# ###",
    "6": "### #.. ### #.# ###", "7": "### ..# ..# .#. .#.", "8": "### #.# ### #.# ###",
    "9": "### #.# ### ..# ###", ".": "... ... ... ... .#.", ",": "... ... ... .#. #..",
    ":": "... .#. ... .#. ...", "%": "#.# ..# .#. #.. #.#", "-": "... ... ### ... ...",
    "(": ".#. #.. #.. #.. .#.", ")": ".#. ..# ..# ..# .#.", "=": "... ### ... ### ...",
    "/": "..# ..# .#. #.. #..", " ": "... ... ... ... ...", "a": "... .## #.# #.# .##",
    "b": "#.. ##. #.# #.# ##.", "c": "... .## #.. #.. .##", "d": "..# .## #.# #.# .##",
    "e": "... .#. ### #.. .##", "f": ".## #.. ##. #.. #..", "g": "... .## #.# .## ##.",
    "h": "#.. ##. #.# #.# #.#", "i": ".#. ... .#. .#. .#.", "j": "..# ... ..# #.# .#.",
    "k": "#.. #.# ##. ##. #.#", "l": "##. .#. .#. .#. ###", "m": "... ##. ### #.# #.#",
    "n": "... ##. #.# #.# #.#", "o": "... .#. #.# #.# .#.", "p": "... ##. #.# ##. #..",
    "q": "... .## #.# .## ..#", "r": "... .## #.. #.. #..", "s": "... .## .#. ..# ##.",
    "t": ".#. ### .#. .#. .##", "u": "... #.# #.# #.# .##", "v": "... #.# #.# #.# .#.",
    "w": "... #.# #.# ### #.#", "x": "... #.# .#. .#. #.#", "y": "... #.# #.# .#. #..",
    "z": "... ### ..# .#. ###",
}  # fmt: skip
GLYPH_WIDTH, GLYPH_HEIGHT = 3, 5


class Canvas:
    """``width`` x ``height`` RGB pixels, filled with ``background``; drawing clips at the edges."""

    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"a canvas needs at least one pixel, got {width}x{height}")
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        """Fill the rectangle with top-left corner (x, y), ``w`` wide and ``h`` high."""
        x0, x1 = max(0, x), min(self.width, x + w)
        if x0 >= x1:
            return
        run = bytes(color) * (x1 - x0)
        for row in range(max(0, y), min(self.height, y + h)):
            start = (row * self.width + x0) * 3
            self.pixels[start : start + len(run)] = run

    def text(self, x: int, y: int, text: str, color: Color, scale: int = 2) -> None:
        """Draw ``text`` with its top-left corner at (x, y); unknown characters show as blanks."""
        for i, char in enumerate(text.lower()):
            rows = _GLYPHS.get(char, _GLYPHS[" "]).split()
            left = x + i * (GLYPH_WIDTH + 1) * scale
            for r, row in enumerate(rows):
                for c, ink in enumerate(row):
                    if ink == "#":
                        self.rect(left + c * scale, y + r * scale, scale, scale, color)

    @staticmethod
    def text_width(text: str, scale: int = 2) -> int:
        return max(0, len(text) * (GLYPH_WIDTH + 1) * scale - scale)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(canvas: Canvas) -> bytes:
    """The canvas as an 8-bit RGB PNG file."""
    stride = canvas.width * 3
    raw = b"".join(
        b"\x00" + bytes(canvas.pixels[row * stride : (row + 1) * stride]) for row in range(canvas.height)
    )
    header = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    return (
        _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    )
