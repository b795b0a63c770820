"""Data of any shape: a data set of feature vectors and a student of vectors, both written
here as a researcher would write them, run end to end on every torch backend; components
that take images only are refused in one line before anything runs."""

from __future__ import annotations

import math
import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from torch import nn

import kdbench
from kdbench.errors import KdbenchError
from kdbench.report.labels import dataset_label
from kdbench.testing import plugin_registry, run_config


@dataclass(kw_only=True)
class Blobs(kdbench.Dataset):
    """Three Gaussian blobs in 6 dimensions, float32, standardised by construction (unit
    spread around centres on the unit sphere, scaled by `separation`)."""

    name: ClassVar[str] = "blobs"
    title: ClassVar[str | None] = "Blobs, {input_shape} features"
    class_names: ClassVar[tuple[str, ...]] = ("a", "b", "c")
    input_shape: ClassVar[tuple[int, ...]] = (6,)

    separation: float = kdbench.option(3.0, help="distance of each centre from the origin")

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        per_class = 300 if split == "train" else 100
        centres = torch.eye(3, 6) * self.separation
        labels = torch.arange(3).repeat_interleave(per_class)
        x = centres[labels] + torch.randn(len(labels), 6, generator=generator)
        return x.float(), labels


class VectorCircuit(nn.Module):
    def __init__(self, context: kdbench.StudentContext, qubits: int):
        super().__init__()
        self.front = nn.Linear(math.prod(context.input_shape), qubits)
        x, w = ParameterVector("x", qubits), ParameterVector("w", qubits)
        circuit = QuantumCircuit(qubits)
        for q in range(qubits):
            circuit.ry(x[q], q)
        for q in range(qubits - 1):
            circuit.cx(q, q + 1)
        for q in range(qubits):
            circuit.ry(w[q], q)
        self.circuit = context.compile(circuit, list(x), list(w))
        self.weights = nn.Parameter(torch.zeros(qubits))
        self.num_classes = context.num_classes

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        angles = torch.pi * torch.tanh(self.front(inputs))
        probs = self.circuit(angles, self.weights.to(angles.dtype))[:, : self.num_classes]
        return probs / probs.sum(1, keepdim=True)


@dataclass(kw_only=True)
class VectorStudent(kdbench.Student):
    """A linear map of the vector to angles, RY encoding, CNOT chain, trainable RY."""

    name: ClassVar[str] = "vector-circuit"
    qubits: int = kdbench.option(2, help="qubits", minimum=2)

    def build(self, context: kdbench.StudentContext) -> nn.Module:
        return VectorCircuit(context, self.qubits)


def registry():
    module = types.ModuleType("vector_plugin")
    module.register_datasets = kdbench.hookimpl(lambda register: register(Blobs))
    module.register_students = kdbench.hookimpl(lambda register: register(VectorStudent))
    return plugin_registry(module)


HEAD = """
[experiment]
name = "vectors"
seeds = [0, 1]

[train]
epochs = 6
batch_size = 16
lr = 0.05

[datasets.blobs]
plugin = "blobs"
train_per_class = 60
val_per_class = 30
test_per_class = 100

[students.mine]
plugin = "vector-circuit"

[backends.mixed]
plugin = "density-matrix"
"""
# A built-in student whose front takes vectors.
CONFIG = (
    HEAD
    + """
[students.pqc]
plugin = "pqc"
front = "linear"

[[matrix]]
datasets = ["blobs"]
students = ["mine", "pqc"]
backends = ["statevector", "mixed"]
"""
)


def test_vectors_run_end_to_end_on_every_torch_backend(isolated, monkeypatch):
    monkeypatch.setattr("kdbench.report.labels.registry", registry)  # as if installed
    config = isolated / "vectors.toml"
    config.write_text(CONFIG)
    ran = run_config(config, registry(), store=isolated / "store")
    assert ran.finished and len(ran.outcomes) == 8, ran.errors
    accuracy = {}
    for run in ran.runs():
        tags, params = run.data.tags, run.data.params
        assert params["dataset.input_shape"] == "6"
        assert dataset_label(params, "blobs")[0] == "Blobs, 6 features"  # the report's name
        accuracy.setdefault((tags["kdbench.student"], tags["kdbench.backend"]), []).append(
            run.data.metrics["test_accuracy"]
        )
    assert set(accuracy) == {(s, b) for s in ("mine", "pqc") for b in ("statevector", "mixed")}
    for (student, _), values in accuracy.items():
        assert min(values) > 0.5, (student, values)  # separated blobs: well above 1/3
    # The two torch simulators agree on the same cells, seed by seed (float tolerance).
    for student in ("mine", "pqc"):
        exact, mixed = accuracy[(student, "statevector")], accuracy[(student, "mixed")]
        assert sorted(exact) == pytest.approx(sorted(mixed), abs=0.01)


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ('[students.pqc]\nplugin = "pqc"\n', "front 'cnn' takes images (C, H, W)"),
        ("[teachers.lenet]\nepochs = 1\n", "LeNet takes images (C, H, W)"),
    ],
    ids=["cnn-front", "lenet-teacher"],
)
def test_image_only_components_are_refused_on_vectors_in_one_line(isolated, tables, message):
    teachers = '["lenet"]' if "teachers" in tables else '["none"]'
    students = '["mine"]' if "teachers" in tables else '["pqc"]'
    config = isolated / "vectors.toml"
    config.write_text(
        HEAD
        + tables
        + f"""
[[matrix]]
datasets = ["blobs"]
teachers = {teachers}
students = {students}
"""
    )
    with pytest.raises(KdbenchError, match="cannot take dataset 'blobs' inputs of shape 6") as e:
        run_config(config, registry(), store=isolated / "store")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (isolated / "store" / "mlflow.db").exists()  # nothing logged
