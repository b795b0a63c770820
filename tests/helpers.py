"""Plain helpers that several test modules share; their fixtures are in conftest.py.

A test module imports what it needs from here (or takes a fixture), never from another test
module. conftest.py imports this module too, so what pulls in MLflow or Qiskit is imported
inside the helper that needs it: a single test file starts as fast as before.
"""

from __future__ import annotations

import hashlib
import math
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

import kdbench

if TYPE_CHECKING:
    from kdbench.tracking import Tracker
    from kdbench_plugins import datasets

# The repository's root: tests/ is one level down, wherever a test module sits below it.
ROOT = Path(__file__).resolve().parent.parent

# A small but complete config: real MNIST, tiny subsets, one epoch.
TINY = """
[experiment]
name = "{name}"
seeds = [0]

[train]
epochs = 2
batch_size = 16

[datasets.mnist-0-2]
plugin = "mnist"
classes = [0, 1, 2]
train_per_class = 12
val_per_class = 8
test_per_class = 10

[teachers.lenet]
epochs = 1
train_per_class = 60

[students.q2]
plugin = "pqc"
qubits = 2
front = "linear"

[[matrix]]
datasets = ["mnist-0-2"]
teachers = ["none", "lenet"]
students = ["q2"]
backends = ["statevector"]
"""

# The real MNIST's images per class (the training and the test files).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# -- bad input through the CLI -------------------------------------------------------------------

# The valid config that the bad-input cases change, one thing at a time.
VALID = TINY.format(name="bad-input")


def replace(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def after(anchor: str, lines: str) -> str:
    """VALID with `lines` added after the line `anchor`."""
    return replace(anchor, f"{anchor}\n{lines}")


def with_matrix(matrix: str, extra: str = "") -> str:
    """VALID with its [[matrix]] replaced by `matrix` (and `extra` tables before it)."""
    return VALID.split("[[matrix]]")[0] + extra + "\n" + matrix


def assert_clean_failure(result, message: str, cwd: Path) -> None:
    """Exit 2, exactly one line on stderr, "Error: ...message...", nothing written."""
    everything = result.stdout + result.stderr
    assert result.exit_code == 2, everything[-2000:]
    assert "Traceback" not in everything
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert message in lines[0], lines[0]
    assert not (cwd / "mlflow.db").exists(), "nothing may be logged"
    assert not (cwd / "mlruns").exists(), "nothing may be logged"
    cache = cwd / "cache"
    assert not cache.exists() or not any(cache.rglob("*")), "nothing may be cached"


def dry_run(invoke, write_config, text: str, *args: str):
    return invoke("run", str(write_config(text)), "--dry-run", *args)


# -- a third-party data set ----------------------------------------------------------------------


@dataclass(kw_only=True)
class Flat(kdbench.Dataset):
    """Images whose pixels all hold `level`: 20 training and 10 test images, two classes."""

    name: ClassVar[str] = "flat"
    class_names: ClassVar[tuple[str, ...]] = ("even", "odd")
    image_shape: ClassVar[tuple[int, int, int]] = (1, 4, 4)
    loads: ClassVar[list[tuple[int, str]]] = []

    level: int = kdbench.option(1, help="every pixel's value", minimum=0, maximum=255)

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        Flat.loads.append((self.level, split))
        n = 20 if split == "train" else 10
        return torch.full((n, 4, 4), self.level, dtype=torch.uint8), torch.arange(n) % 2


# -- small synthetic IDX files (the `fake` fixture) ----------------------------------------------

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TRAIN_PER_CLASS, TEST_PER_CLASS = 12, 6


def idx_bytes(array: torch.Tensor) -> bytes:
    """An IDX file: magic 0x0803 (3-d ubyte) or 0x0801 (1-d ubyte), big-endian sizes, data."""
    magic = 0x00000800 | array.dim()
    return struct.pack(f">I{array.dim()}I", magic, *array.shape) + array.numpy().tobytes()


def make_split(n_per_class: int, first_id: int, generator: torch.Generator):
    """Images whose pixel [0, 0] holds a unique id (to check disjointness), labels shuffled."""
    n = 10 * n_per_class
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=generator)].to(torch.uint8)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    images[:, 0, 0] = torch.arange(first_id, first_id + n, dtype=torch.uint8)
    return images, labels


def write_fake(root: Path, cls: type[datasets.IdxDataset], monkeypatch) -> dict[str, torch.Tensor]:
    """Write a small data set in torchvision's layout and make `cls` expect its md5s."""
    g = torch.Generator().manual_seed(0)
    train_x, train_y = make_split(TRAIN_PER_CLASS, 0, g)
    test_x, test_y = make_split(TEST_PER_CLASS, 10 * TRAIN_PER_CLASS, g)
    arrays = dict(zip(FILES, (train_x, train_y, test_x, test_y), strict=True))
    raw = root / cls.folder / "raw"
    raw.mkdir(parents=True)
    md5 = {}
    for name, array in arrays.items():
        content = idx_bytes(array)
        (raw / name).write_bytes(content)
        md5[name] = hashlib.md5(content).hexdigest()
    monkeypatch.setattr(cls, "md5", md5)
    return arrays


# -- circuits and students -----------------------------------------------------------------------


def student_circuit(qubits: int = 3, layers: int = 1):
    """The pqc student's circuit: H+RY(x) encoding, then CNOT chain + RY(w) layers."""
    from kdbench_plugins.encoders import Angle
    from kdbench_plugins.students import ansatz

    encoding, inputs = Angle().circuit(qubits)
    trainable, weights = ansatz(qubits, layers, "linear", "ry")
    return encoding.compose(trainable), list(inputs), list(weights)


def randn(*shape: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator)


def grads(fn, x, w, coeffs):
    """Probabilities and d(sum_b probs[b] @ coeffs)/d(inputs, weights)."""
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    probs = fn(x, w)
    (probs @ coeffs).sum().backward()
    return probs.detach(), x.grad, w.grad


def tiny_student(seed: int = 0):
    from kdbench.api import StudentContext
    from kdbench_plugins.encoders import Angle
    from kdbench_plugins.statevector import Statevector
    from kdbench_plugins.students import Pqc

    torch.manual_seed(seed)
    context = StudentContext(
        num_classes=3, input_shape=(1, 28, 28), backend=Statevector(), encoder=Angle(), seed=seed
    )
    return Pqc(qubits=2, front="linear", layers=2).build(context)


# -- runs in an MLflow store ---------------------------------------------------------------------


def statuses(uri: str, experiment: str) -> list[tuple[str, str]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return sorted((r.data.tags.get("kdbench.role"), r.info.status) for r in runs)


# The accuracies that log_cells logs: a gain of MEAN ± SD (over 5 seeds) whose two-sided
# p-value is exactly 0.05.
BASELINE = [0.80, 0.84, 0.90, 0.78, 0.86]
Z = [-math.sqrt(1.6), -math.sqrt(0.4), 0.0, math.sqrt(0.4), math.sqrt(1.6)]  # mean 0, sd 1
T_975_DF4 = 2.776445  # the 97.5 % quantile of Student's t with 4 degrees of freedom
SD = 0.02
MEAN = T_975_DF4 * SD / math.sqrt(5)  # a gain whose two-sided p-value is exactly 0.05
DISTILLED = [b + MEAN + SD * z for b, z in zip(BASELINE, Z, strict=True)]


def log_cells(tracker: Tracker, distilled: list[float] = DISTILLED) -> None:
    """Ten finished cells (5 seeds, with and without LeNet) the way kdbench logs them."""
    from kdbench.tracking import flatten

    parent = tracker.start_run("fake", {"kdbench.role": "invocation"})
    for teacher, accuracies in (("none", BASELINE), ("lenet", distilled)):
        for seed, accuracy in enumerate(accuracies):
            tags = {
                "kdbench.role": "cell",
                "kdbench.cell_id": f"{teacher}{seed}",
                "kdbench.dataset": "mnist-0-5",
                "kdbench.teacher": teacher,
                "kdbench.student": "released-q3",
                "kdbench.backend": "statevector",
                "kdbench.seed": str(seed),
            }
            run = tracker.start_run(f"{teacher} {seed}", tags, parent=parent)
            config = {
                "dataset": {"plugin": "mnist", "classes": [0, 1, 2, 3, 4, 5]},
                "student": {"plugin": "released-q3", "qubits": 3},
                "teacher": None if teacher == "none" else {"plugin": "lenet", "shuffled": False},
            }
            tracker.log_params(run, flatten(config))
            metrics = {"test_accuracy": accuracy}
            if teacher != "none":
                metrics["teacher_test_accuracy"] = 0.99 - 0.001 * seed
            for epoch in (1, 2, 3):
                tracker.log_metrics(
                    run, {"train_loss": 2.0 / epoch, "val_loss": 2.1 / epoch}, epoch
                )
            tracker.log_metrics(run, metrics)
            tracker.finish(run)
    tracker.finish(parent)


# -- servers a test starts -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_here(spec, registry, tracker, cache: Path, events=None, **options) -> list:
    """Every cell of `spec` run in this process into `tracker` (run_matrix, `options` its
    own; no display unless `events`)."""
    from kdbench.matrix import expand
    from kdbench.paths import data_dir
    from kdbench.run import Events, run_matrix

    return run_matrix(
        spec,
        expand(spec),
        registry=registry,
        tracker=tracker,
        data_root=data_dir(),
        cache=cache,
        events=events or Events(),
        **options,
    )
