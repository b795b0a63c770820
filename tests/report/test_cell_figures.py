"""The confusion matrix a cell logs, painted over a cached frame, against matplotlib drawing
the same figure whole (perf/cell_figure.py's reference, which also times the two)."""

from __future__ import annotations

import importlib.util
import io

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.transforms import Bbox
from PIL import Image

from kdbench.report.cell_figures import confusion_matrix
from tests.helpers import ROOT

SCRIPT = ROOT / "perf" / "cell_figure.py"


def loaded_reference():
    # perf/ is a folder of scripts, not a package: load the script as a module.
    spec = importlib.util.spec_from_file_location("kdbench_perf_cell_figure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.drawn_whole


def drawn_whole(counts: np.ndarray, names: list[str], title: str) -> tuple[np.ndarray, ...]:
    """The reference figure's pixels; each square's centre in them (x, y; rows top first);
    and where its texts and the axes' edges are."""
    figure = loaded_reference()(counts, names, title)
    axis = figure.axes[0]
    pixels = np.asarray(figure.canvas.buffer_rgba())[:, :, :3]
    height, width = pixels.shape[:2]
    rows, columns = np.mgrid[0:height, 0:width]

    def near(box: Bbox, margin: int) -> np.ndarray:
        top, bottom = height - box.y1 - margin, height - box.y0 + margin
        return (
            (rows >= top)
            & (rows <= bottom)
            & (columns >= box.x0 - margin)
            & (columns <= box.x1 + margin)
        )

    edges = near(axis.get_window_extent(), 2) & ~near(axis.get_window_extent(), -2)
    for text in (*axis.texts, axis.title):
        edges |= near(text.get_window_extent(), 2)
    ticks = range(len(names))
    centres = axis.transData.transform([(j, i) for i in ticks for j in ticks])
    centres[:, 1] = height - centres[:, 1]
    return pixels, centres.reshape(len(names), len(names), 2), edges


# A style of the user's (matplotlibrc) is the frame's and the painted parts' too.
GREY = {"axes.facecolor": "#e5e5e5", "text.color": "#333333", "axes.titlecolor": "#550000"}


@pytest.mark.parametrize(
    ("classes", "style"), [(3, {}), (6, {}), (10, {}), (4, GREY)], ids=["3", "6", "10", "styled"]
)
def test_the_painted_figure_is_matplotlib_s_own(classes, style):
    with matplotlib.rc_context(style):
        compare(classes)


def compare(classes: int) -> None:
    counts = torch.randint(0, 500, (classes, classes), generator=torch.Generator().manual_seed(0))
    counts[0] = 0  # a class never seen: its row is white, not a division by zero
    names = [f"{k} - class {k}" for k in range(classes)]
    title = "mnist · lenet · vqc-q3 · seed 3"
    png = confusion_matrix(counts, names, title)
    painted = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    reference, centres, text_or_edge = drawn_whole(counts.numpy(), names, title)
    reference = reference.astype(int)
    assert painted.shape == reference.shape
    # Every pixel agrees but for the text, which PIL rasterises instead of matplotlib's Agg
    # (anti-aliased edges, positions within a pixel), and the axes' anti-aliased inner edge,
    # blended with white instead of the squares' colour.
    apart = (painted != reference).any(axis=2)
    assert not (apart & ~text_or_edge).any(), np.argwhere(apart & ~text_or_edge)[:5]
    # The text is there: where the reference has a count, the painted figure has one too.
    quarter = int((centres[0, 1, 0] - centres[0, 0, 0]) / 4)
    for i, j in np.ndindex(classes, classes):
        x, y = (int(v) for v in centres[i, j])
        window = painted[y - 4 : y + 5, x - quarter : x + quarter].min(axis=2)
        assert window.min() < 100, (i, j)  # dark glyph pixels on any square


def test_a_long_title_is_made_to_fit_the_figure():
    counts = torch.eye(3, dtype=torch.long) * 40
    title = "fashion-mnist-0-7 · lenet-shuffled-within-class · twin-q4 · exact · paper · seed 19"
    painted = np.asarray(Image.open(io.BytesIO(confusion_matrix(counts, "abc", title))))
    band = painted[:45].min(axis=2)  # the title's rows, above the axes
    assert (band < 100).any(), "the title is drawn"
    assert (band[:, :3] == 255).all() and (band[:, -3:] == 255).all(), "not cut at an edge"
