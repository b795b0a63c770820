"""What depends on the data or the machine is refused before anything is logged.

A circuit too large for memory or wider than a noise device, and a teacher that cannot take a
data set's images, used to pass `--dry-run` and fail every cell; real IBM hardware without
credentials is refused alike. Each case here runs `kdbench run` in-process, with and without
`--dry-run`, on real MNIST and the real plugins: exit 2, one "Error:" line, nothing logged or
cached; and a config that fits still passes.
"""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

import kdbench
import kdbench.config
import kdbench.plugins
from kdbench.memory import memory_limit
from kdbench.plugins import load_registry
from kdbench_plugins.datasets import Mnist
from tests.helpers import after, assert_clean_failure, replace, with_matrix

ONLY_STUDENT = replace('teachers = ["none", "lenet"]', 'teachers = ["none"]')
NOISY = '\n[backends.noisy]\nplugin = "aer"\nnoise = "fake_manila"\n'


def qubits(count: int, text: str = ONLY_STUDENT) -> str:
    # first-c on 3 classes reads 2 qubits: the others are allowed here, where width is tested.
    return replace("qubits = 2", f"qubits = {count}\nallow_unused_qubits = true", text)


def on(backend: str, text: str) -> str:
    return replace('backends = ["statevector"]', f'backends = ["{backend}"]', text)


def refused(write_config, invoke, isolated, text: str, message: str, *flags: str) -> None:
    assert_clean_failure(invoke("run", str(write_config(text)), *flags), message, isolated)


def passes(write_config, invoke, text: str) -> None:
    result = invoke("run", str(write_config(text)), "--dry-run")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "cells of" in result.stdout


RUNS = pytest.mark.parametrize("flags", [("--dry-run",), ()], ids=["dry-run", "run"])

# -- (a) a state that cannot fit in memory --


@RUNS
def test_statevector_state_too_large_for_memory(write_config, invoke, isolated, flags):
    # 30 encoding and 30 ansatz rotations: autograd keeps 63 states of 4 GiB per input.
    message = (
        "statevector: a 30-qubit circuit training on batches of 16 (16 × 63 states of 2^30 "
        "float32 amplitudes, kept for autograd, and the compiled tables) needs about 4.0 TiB, "
        "more than the "
    )
    refused(write_config, invoke, isolated, qubits(30), message, *flags)


def test_statevector_parameter_shift_counts_the_shifted_circuits(write_config, invoke, isolated):
    text = qubits(30) + '\n[backends.statevector]\ngradient = "parameter-shift"\n'
    message = "training on batches of 16 (960 × 2 states of 2^30 float64 amplitudes, and the"
    refused(write_config, invoke, isolated, text, message, "--dry-run")


def test_statevector_qubits_that_fit_pass(write_config, invoke, isolated):
    passes(write_config, invoke, qubits(10))
    assert not (isolated / "mlflow.db").exists()


def test_aer_wider_than_its_simulator(write_config, invoke, isolated):
    from qiskit_aer import AerSimulator

    # Aer sizes its statevector limit to the memory (30 qubits on 23 GiB); students stop at 32.
    limit = AerSimulator().num_qubits
    if limit >= 32:
        pytest.skip(f"Aer takes {limit} qubits on this machine, as many as a student may have")
    message = f"aer: the circuit has {limit + 1} qubits, AerSimulator (method 'automatic') on"
    refused(write_config, invoke, isolated, on("aer", qubits(limit + 1)), message, "--dry-run")


def test_aer_outcome_frequencies_too_large_for_memory(write_config, invoke, isolated):
    # Matrix product states take 63 qubits, but every row comes back as 2**32 frequencies.
    text = (
        on("mps", qubits(32))
        + '\n[backends.mps]\nplugin = "aer"\nmethod = "matrix_product_state"\n'
    )
    message = "aer: a 32-qubit circuit training on batches of 16 (1024 rows of 2^32 float64"
    refused(write_config, invoke, isolated, text, message, "--dry-run")


def test_students_stop_at_32_qubits(write_config, invoke, isolated):
    message = "students.q2.qubits: must be <= 32"
    refused(write_config, invoke, isolated, qubits(33), message, "--dry-run")


def test_amplitude_encoding_past_16_qubits_is_refused(write_config, invoke, isolated):
    text = replace('front = "linear"', 'front = "linear"\nencoder = "amplitude"', qubits(17))
    message = "amplitude: encoding 17 qubits takes 2^17 - 1 rotations and as many features"
    refused(write_config, invoke, isolated, text, message, "--dry-run")


def test_a_student_whose_weights_cannot_fit_is_refused(write_config, invoke, isolated):
    # The classical control maps 30 features to 2**30 outcomes: a 30 × 2**30 linear layer.
    text = (
        ONLY_STUDENT + '\n[students.wide]\nplugin = "classical"\nqubits = 30\nreadout = "first-c"\n'
    )
    text = replace('students = ["q2"]', 'students = ["wide"]', text)
    message = "float32 weights, with their gradients and Adam's moments) needs about 496.0 GiB"
    refused(write_config, invoke, isolated, text, message, "--dry-run")


def test_teacher_seed_beyond_numpy_s_range_is_refused(write_config, invoke, isolated):
    text = replace(
        "[teachers.lenet]\nepochs = 1", "[teachers.lenet]\nepochs = 1\nseed = 4294967296"
    )
    refused(write_config, invoke, isolated, text, "teachers.lenet.seed: must be <= 4294967295")


# -- (b) a student wider than its device --


@RUNS
def test_aer_noise_device_too_narrow(write_config, invoke, isolated, flags):
    text = on("noisy", qubits(6)) + NOISY
    message = "aer: the circuit has 6 qubits, noise device 'fake_manila' only 5"
    refused(write_config, invoke, isolated, text, message, *flags)


def test_eval_backend_noise_device_too_narrow(write_config, invoke, isolated):
    anchor = 'backends = ["statevector"]'
    text = replace(anchor, f'{anchor}\neval_backend = "noisy"', qubits(6)) + NOISY
    message = "aer: the circuit has 6 qubits, noise device 'fake_manila' only 5"
    refused(write_config, invoke, isolated, text, message, "--dry-run")


@RUNS
def test_ibm_runtime_fake_device_too_narrow(write_config, invoke, isolated, flags):
    text = on("ibm", qubits(6)) + '\n[backends.ibm]\nplugin = "ibm-runtime"\n'
    message = "ibm-runtime: the circuit has 6 qubits, device 'fake_manila' only 5"
    refused(write_config, invoke, isolated, text, message, *flags)


def test_student_as_wide_as_the_noise_device_passes(write_config, invoke, isolated):
    passes(write_config, invoke, on("noisy", qubits(5)) + NOISY)
    passes(
        write_config, invoke, on("ibm", qubits(5)) + '\n[backends.ibm]\nplugin = "ibm-runtime"\n'
    )


# -- (c) a teacher that cannot take the images --


def shrunk(size: int) -> type[kdbench.Dataset]:
    """MNIST's real images, average-pooled to size x size: a third-party data set."""

    class Shrunk(Mnist):
        __doc__ = f"MNIST pooled to {size}x{size}."
        name = f"mnist-{size}x{size}"
        image_shape = (1, size, size)

        def load(self, root, split):
            images, labels = super().load(root, split)
            pooled = F.adaptive_avg_pool2d(images[:, None].float(), size)
            return pooled[:, 0].round().to(torch.uint8), labels

    return Shrunk


@pytest.fixture
def small_images(monkeypatch):
    """The CLI's registry with MNIST at 7x7 and 2x2 ("mnist-7x7", "mnist-2x2")."""
    module = types.ModuleType("small_images")
    module.register_datasets = kdbench.hookimpl(
        lambda register: [register(shrunk(size)) for size in (7, 2)]
    )
    small = load_registry(extra=[("small-images", module)])
    monkeypatch.setattr(kdbench.plugins, "registry", lambda: small)


def small(size: int, teacher: str, extra: str = "") -> str:
    """VALID's student taught by `teacher` on MNIST pooled to size x size."""
    dataset = (
        f'[datasets.small]\nplugin = "mnist-{size}x{size}"\nclasses = [0, 1, 2]\n'
        "train_per_class = 12\nval_per_class = 8\ntest_per_class = 10\n"
    )
    matrix = f'[[matrix]]\ndatasets = ["small"]\nteachers = ["{teacher}"]\nstudents = ["q2"]\n'
    return with_matrix(matrix, dataset + extra)


SHAPE_7 = "teacher 'lenet' cannot take dataset 'small' inputs of shape 1×7×7: Calculated padded"


@RUNS
def test_lenet_on_7x7_images(write_config, invoke, isolated, small_images, flags):
    refused(write_config, invoke, isolated, small(7, "lenet"), SHAPE_7, *flags)


def test_alexnet_on_2x2_images(write_config, invoke, isolated, small_images):
    message = "teacher 'alexnet' cannot take dataset 'small' inputs of shape 1×2×2: Given input"
    refused(write_config, invoke, isolated, small(2, "alexnet"), message, "--dry-run")


@RUNS
def test_ensemble_with_a_member_that_cannot_take_the_images(
    write_config, invoke, isolated, small_images, flags
):
    ensemble = '[teachers.ens]\nplugin = "ensemble"\nmembers = ["alexnet", "lenet"]\n'
    refused(write_config, invoke, isolated, small(7, "ens", ensemble), SHAPE_7, *flags)


def test_teachers_that_take_the_images_pass(write_config, invoke, isolated, small_images):
    # AlexNet pools 7x7 to 1x1; the ensemble's other member takes 28x28.
    passes(write_config, invoke, small(7, "alexnet"))
    ensemble = '[teachers.ens]\nplugin = "ensemble"\nmembers = ["alexnet", "lenet"]\n'
    passes(
        write_config,
        invoke,
        with_matrix(
            '[[matrix]]\ndatasets = ["mnist-0-2"]\nteachers = ["ens"]\nstudents = ["q2"]\n',
            ensemble,
        ),
    )
    assert not (isolated / "cache").exists() or not any((isolated / "cache").rglob("*"))


def test_memory_limit_is_the_machine_s_at_most():
    import os

    limit = memory_limit()
    assert limit is not None and 0 < limit <= os.sysconf("SC_PHYS_PAGES") * os.sysconf(
        "SC_PAGE_SIZE"
    )


# -- a student that cannot take the images --

CNN_FRONT = '[students.cnn]\nplugin = "pqc"\nqubits = 2\nfront = "cnn"\n'


@RUNS
def test_cnn_front_on_7x7_images(write_config, invoke, isolated, small_images, flags):
    text = replace('students = ["q2"]', 'students = ["cnn"]', small(7, "none", CNN_FRONT))
    message = "student 'cnn' cannot take dataset 'small' inputs of shape 1×7×7: "
    refused(write_config, invoke, isolated, text, message, *flags)


def test_students_that_take_the_images_pass(write_config, invoke, isolated, small_images):
    text = small(7, "none", CNN_FRONT)  # q2 has a linear front: any size
    passes(write_config, invoke, text)
    big = with_matrix('[[matrix]]\ndatasets = ["mnist-0-2"]\nstudents = ["cnn", "q2"]\n', CNN_FRONT)
    passes(write_config, invoke, big)


# -- real IBM hardware without credentials --

IBM_HARDWARE = (
    replace('backends = ["statevector"]', 'backends = ["ibm"]')
    + '\n[backends.ibm]\nplugin = "ibm-runtime"\nbackend = "ibm_brisbane"\n'
    "confirm_hardware = true\n"
)


def test_ibm_hardware_without_credentials(write_config, invoke, isolated, no_ibm_account):
    result = invoke("run", str(write_config(IBM_HARDWARE)))
    assert_clean_failure(
        result, "ibm-runtime: no IBM Quantum credentials for backend 'ibm_brisbane'", isolated
    )


def test_ibm_hardware_as_eval_backend_without_credentials(
    write_config, invoke, isolated, no_ibm_account
):
    text = (
        after('backends = ["statevector"]', 'eval_backend = "ibm"')
        + '\n[backends.ibm]\nplugin = "ibm-runtime"\nbackend = "ibm_brisbane"\n'
        "confirm_hardware = true\n"
    )
    result = invoke("run", str(write_config(text)))
    assert_clean_failure(result, "no IBM Quantum credentials", isolated)
