"""Qiskit Aer noise models for backends: a fake device's, a saved one, uniform depolarizing."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdbench.errors import OptionError
from kdbench.quantum.devices import fake_backend, is_fake_name

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit
    from qiskit_aer.noise import NoiseModel

# Instructions that get no uniform depolarizing error: they are not gates.
NOT_GATES = frozenset({"measure", "barrier", "delay", "reset"})


def gets_depolarizing(name: str, num_qubits: int) -> bool:
    """Whether a backend's `depolarizing` option puts an error after this instruction: every
    1- and 2-qubit gate (the `aer` and `density-matrix` backends agree on this)."""
    return name not in NOT_GATES and 1 <= num_qubits <= 2


def depolarizing_targets(isa: QuantumCircuit) -> list[tuple[str, tuple[int, ...]]]:
    """(gate, qubits) of every distinct 1- and 2-qubit gate application of `isa`."""
    found: dict[tuple[str, tuple[int, ...]], None] = {}
    for instruction in isa.data:
        qubits = tuple(isa.find_bit(q).index for q in instruction.qubits)
        if gets_depolarizing(instruction.operation.name, len(qubits)):
            found[instruction.operation.name, qubits] = None
    return list(found)


def depolarizing_option() -> float | None:
    """The `depolarizing` option of a backend with noise (a dataclass field): the probability
    of a uniform depolarizing error after every 1- and 2-qubit gate (`gets_depolarizing`)."""
    from kdbench.options import option

    return option(
        None,
        help="depolarizing error probability after every 1- and 2-qubit gate",
        minimum=0,
        maximum=1,
    )


@functools.lru_cache(maxsize=8)
def device_noise_model(name: str) -> NoiseModel:
    """`NoiseModel.from_backend` of the fake device `name`, built once per process (seconds
    for a 127-qubit device). Shared: copy it before adding errors."""
    from qiskit_aer.noise import NoiseModel

    return NoiseModel.from_backend(fake_backend(name, "noise")())


def load_noise_model(path: str | Path, key: str = "noise") -> NoiseModel:
    """A `qiskit_aer.noise.NoiseModel` saved with `pickle.dump(model, file)`.

    Raise OptionError on option `key` for a missing file or one that holds no NoiseModel.
    Unpickling runs code from the file: load only models you made or trust.
    """
    from qiskit_aer.noise import NoiseModel

    file = Path(path).expanduser()
    if not file.is_file():
        raise OptionError(
            key,
            f"'{path}' is neither a fake IBM device (e.g. FakeManilaV2) nor a file; a saved "
            "noise model is a pickled qiskit_aer.noise.NoiseModel",
        )
    try:
        with file.open("rb") as handle:
            model: Any = pickle.load(handle)
    except Exception as error:  # unpickling raises many kinds
        raise OptionError(key, f"'{path}' is not a pickled NoiseModel ({error})") from None
    if not isinstance(model, NoiseModel):
        raise OptionError(
            key, f"'{path}' holds a {type(model).__name__}, not a qiskit_aer.noise.NoiseModel"
        )
    return model


def names_device(value: str) -> bool:
    """Whether a `noise` option names a fake device (else it is the path of a saved model)."""
    return is_fake_name(value) and not Path(value).expanduser().is_file()


def noise_source(value: str, key: str = "noise") -> NoiseModel:
    """The noise model of a `noise` option: a fake device's name or the path of a saved
    model. Raise OptionError for neither."""
    if names_device(value):
        return device_noise_model(fake_backend(value, key).__name__)
    return load_noise_model(value, key)
