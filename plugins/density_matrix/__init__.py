"""The `density-matrix` backend: exact noisy simulation in torch, gradients by autograd."""

# Laid out as the statevector backend is: `device` is the backend; `compiler` turns a circuit
# and its noise (`noise`) into the `steps`, `fusion` merges them into superoperators that
# `apply_operation` applies, `measure` reads the outcomes, `simulate` runs the result.
from .device import DensityMatrix, register_backends
from .simulate import CompiledDensityMatrix

__all__ = ["CompiledDensityMatrix", "DensityMatrix", "register_backends"]
