"""A cell's confusion matrix, painted over its cached frame (`kdbench.report.cell_figures`),
against matplotlib drawing the same figure whole and saving it as PNG: the time of each,
alternately, medians and their ratio. tests/report/test_cell_figures.py holds the painted
figure to this reference pixel by pixel.

    .venv/bin/python perf/cell_figure.py            # 6 classes, 20 repeats of each
    .venv/bin/python perf/cell_figure.py --classes 10 --repeats 50
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdbench.report.cell_figures import confusion_matrix


def drawn_whole(counts: np.ndarray, names: list[str], title: str) -> Figure:
    """The figure as matplotlib draws it in one go: the reference (laid out for a title of
    one word, as the cached frame is)."""
    figure = Figure(figsize=(5, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(names))
    axis.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="true")
    axis.set_xticklabels(names, rotation=45, ha="right")
    axis.set_yticklabels(names)
    for i in ticks:
        for j in ticks:
            light = {"color": "white"} if shares[i, j] > 0.5 else {}
            axis.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, **light)
    figure.colorbar(image, label="share of the true class")
    axis.set_title("title")
    figure.tight_layout()
    axis.set_title(title)
    figure.canvas.draw()
    return figure


def whole_png(counts: np.ndarray, names: list[str], title: str) -> bytes:
    buffer = io.BytesIO()
    drawn_whole(counts, names, title).savefig(buffer, format="png")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    counts = torch.randint(0, 500, (args.classes, args.classes), generator=torch.Generator())
    names = [f"{k} - class {k}" for k in range(args.classes)]
    title = "mnist-0-5 · lenet · vqc-q3 · exact · seed 3"
    confusion_matrix(counts, names, title)  # the frame, drawn once per process
    times: dict[str, list[float]] = {"painted": [], "matplotlib": []}
    for _ in range(args.repeats):
        for name, draw in (("painted", confusion_matrix), ("matplotlib", whole_png)):
            started = time.perf_counter()
            draw(counts if name == "painted" else counts.numpy(), names, title)
            times[name].append(time.perf_counter() - started)
    painted, whole = (statistics.median(times[k]) * 1000 for k in ("painted", "matplotlib"))
    print(f"{args.classes} classes, medians of {args.repeats}, alternately:")
    print(f"  painted over the cached frame  {painted:7.1f} ms")
    print(f"  matplotlib, whole figure       {whole:7.1f} ms")
    print(f"  ratio                          {whole / painted:7.2f}x")


if __name__ == "__main__":
    main()
