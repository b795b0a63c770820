"""One training step of the verdict's AlexNet (batch 256, 8 classes, one thread) three ways:
float32, torch's own bfloat16 autocast, and kdbench's (kdbench/bfloat16.py: on a CPU without
bfloat16 arithmetic, float32 products of bfloat16-rounded operands). Steps alternate (A B C A
B C ...); the median seconds of each and the ratios are printed, with what the CPU has.

    .venv/bin/python perf/bfloat16.py --batch 64   # ~3 min on an AVX2 CPU
    .venv/bin/python perf/bfloat16.py              # batch 256, the teachers': over 10 min there
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdbench import bfloat16
from kdbench.testing import make, plugin_registry

RESULTS = Path(__file__).resolve().parent / "results"

WAYS = {
    "float32": contextlib.nullcontext,
    "torch bfloat16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    "kdbench bfloat16": lambda: bfloat16.autocast("cpu"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    alexnet = make(plugin_registry(), "teachers", "alexnet")
    model = alexnet.build(8, (1, 28, 28)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.rand(args.batch, 1, 28, 28), torch.randint(0, 8, (args.batch,))

    def step(way: str) -> float:
        started = time.perf_counter()
        with WAYS[way]():
            out = model(x).log_softmax(1)
        loss = F.nll_loss(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    for way in WAYS:  # warm-up: first-call allocations and kernel choice
        step(way)
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    for repeat in range(args.repeats):
        for way in WAYS:
            seconds[way].append(step(way))
            print(f"repeat {repeat + 1}, {way}: {seconds[way][-1]:.2f} s", flush=True)
    medians = {way: statistics.median(s) for way, s in seconds.items()}
    native = bfloat16.cpu_has_bfloat16()
    print(f"CPU has bfloat16 arithmetic (oneDNN): {native}; batch {args.batch}, one thread")
    for way, median in medians.items():
        print(f"{way:>18}: {median:6.2f} s a step (median of {args.repeats})")
    ours, theirs = medians["kdbench bfloat16"], medians["torch bfloat16"]
    print(f"kdbench against torch's bfloat16: {theirs / ours:.2f}x faster")
    print(f"kdbench bfloat16 against float32: {ours / medians['float32']:.2f}x the time")
    RESULTS.mkdir(exist_ok=True)
    record = {"native_bfloat16": native, "batch": args.batch, "seconds": seconds}
    (RESULTS / "bfloat16.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
