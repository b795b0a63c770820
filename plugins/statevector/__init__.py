"""The exact statevector backend: a parameterized Qiskit circuit as a torch function."""

# Laid out like a PennyLane device: `device` is the backend; `builder` turns a circuit into
# the operations of `apply_operation`, `fusion` merges them, `simulate` runs the result.
from .builder import SUPPORTED_GATES
from .device import Statevector, register_backends
from .fusion import FUSE_MAX_QUBITS
from .simulate import CompiledStatevector

__all__ = [
    "FUSE_MAX_QUBITS",
    "SUPPORTED_GATES",
    "CompiledStatevector",
    "Statevector",
    "register_backends",
]
