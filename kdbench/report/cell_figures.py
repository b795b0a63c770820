"""The figure of one cell logged with its run: the confusion matrix on the test set.

A matrix draws it for every cell, so matplotlib draws its frame (axes, class names, colour
bar) once per process and class names; a cell's squares, counts and title are painted over
a copy of the frame's pixels with PIL, in matplotlib's own font. Drawn by matplotlib, the
figure cost a cell ~0.15 s whole and ~0.1 s over a cached frame (its 2.5 ms a text): more
than training a small student's seeds stacked.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:  # torch is slow to import; annotations only
    import torch

_DPI = 120
_COUNT_POINTS = 7
_DARK = 0.5  # a square darker than this share has its count in white
_MARGIN = 4  # pixels between the title and the figure's edges


def confusion_matrix(confusion: torch.Tensor, class_names: Sequence[str], title: str) -> bytes:
    """Counts of (true, predicted) classes on the test set, coloured by the share of each
    true class (row) they are."""
    frame = _confusion_frame(tuple(class_names))
    counts = confusion.numpy()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    pixels = frame.pixels.copy()
    # Each square's colour on the frame's blank axes (a pixel of the spines stays as it is).
    colours = frame.colour_map(shares.flatten(), bytes=True)[:, :3]
    pixels[frame.blank] = colours[frame.squares]
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    cells = zip(frame.centres, counts.flatten().tolist(), shares.flatten().tolist(), strict=True)
    for (x, y), count, share in cells:
        colour = "white" if share > _DARK else frame.text_colour  # legible on dark squares
        draw.text((x, y), str(count), fill=colour, font=frame.count_font, anchor="mm")
    # A title wider than the figure is made smaller, and kept inside it, not cut at its edge.
    font, width = frame.title_font, image.width - 2 * _MARGIN
    if font.getlength(title) > width:
        font = font.font_variant(size=font.size * width / font.getlength(title))
    half = font.getlength(title) / 2
    x = min(max(frame.title_at[0], _MARGIN + half), image.width - _MARGIN - half)
    draw.text((x, frame.title_at[1]), title, fill=frame.title_colour, font=font, anchor="ms")
    buffer = io.BytesIO()
    # zlib level 1: a third of the time of the default level 6, for files ~1.3x larger.
    image.save(buffer, "png", compress_level=1)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Frame:
    pixels: np.ndarray  # RGB rows, top first
    blank: np.ndarray  # the pixels the squares colour: the axes' white inside
    squares: np.ndarray  # the square (row-major index) of each of them
    colour_map: Colormap
    centres: list[tuple[float, float]]  # each square's centre, row after row
    title_at: tuple[float, float]  # the title's centre and baseline
    count_font: ImageFont.FreeTypeFont
    title_font: ImageFont.FreeTypeFont
    text_colour: str
    title_colour: str


@cache
def _confusion_frame(class_names: tuple[str, ...]) -> _Frame:
    """The figure for these class names drawn without squares, counts or title, and where
    they go."""
    figure = Figure(figsize=(5, 4.5), dpi=_DPI)
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    size = len(class_names)
    image = axis.imshow(np.zeros((size, size)), cmap="Blues", vmin=0, vmax=1)
    ticks = range(size)
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    axis.set_xticklabels(class_names, rotation=45, ha="right")
    axis.set_yticklabels(class_names)
    figure.colorbar(image, label="share of the true class")
    axis.set_title("title")  # laid out with a title's room, which each cell fills
    figure.tight_layout()  # once, for these class names; a cell changes only numbers
    figure.canvas.draw()  # places the title: centred, on its baseline
    title = axis.title.get_transform().transform(axis.title.get_position())
    image.set_visible(False)
    axis.title.set_visible(False)
    figure.canvas.draw()
    width, height = figure.canvas.get_width_height()

    def flip(xy: np.ndarray) -> tuple[float, float]:  # display: y up; pixels: y down
        return float(xy[0]), height - float(xy[1])

    pixels = np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()
    # The square each pixel's centre lies in (row, column); outside the axes, out of range.
    (left, top), (right, bottom) = (
        flip(p) for p in axis.transData.transform([(-0.5, -0.5), (size - 0.5, size - 0.5)])
    )
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    row = np.floor((ys - top) / (bottom - top) * size).astype(int)
    col = np.floor((xs - left) / (right - left) * size).astype(int)
    inside = (row >= 0) & (row < size) & (col >= 0) & (col < size)
    face = np.round(np.array(to_rgb(axis.get_facecolor())) * 255)  # white, but for a style's
    blank = inside & (pixels == face).all(axis=2)
    font = findfont(FontProperties())
    return _Frame(
        pixels=pixels,
        blank=blank,
        squares=(row * size + col)[blank],
        colour_map=image.get_cmap(),
        centres=[flip(p) for p in axis.transData.transform([(j, i) for i in ticks for j in ticks])],
        title_at=flip(title),
        count_font=ImageFont.truetype(font, _COUNT_POINTS * _DPI / 72),
        title_font=ImageFont.truetype(font, axis.title.get_fontsize() * _DPI / 72),
        text_colour=to_hex(rcParams["text.color"]),
        title_colour=to_hex(axis.title.get_color()),
    )
