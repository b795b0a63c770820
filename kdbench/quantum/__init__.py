"""The circuit toolkit for backend and student authors; import its names from `kdbench`."""
# ruff: noqa: F401  (re-exports)

from kdbench.quantum.amplitudes import (
    AMPLITUDES,
    amplitude_angles,
    amplitude_circuit,
    amplitudes_from_angles,
)
from kdbench.quantum.angles import linear_angle, linear_form, parameter_columns
from kdbench.quantum.counters import CircuitCounters, check_circuit_call
from kdbench.quantum.devices import fake_backend, fake_backends, is_fake_name
from kdbench.quantum.gates import EXACT_GATES, decompose_to, exact_definition, varying_angles
from kdbench.quantum.noise import (
    depolarizing_option,
    depolarizing_targets,
    device_noise_model,
    gets_depolarizing,
    load_noise_model,
    names_device,
    noise_source,
)
from kdbench.quantum.primitives import (
    PrimitiveSampler,
    bind_order,
    bit_array_probabilities,
    measured,
    measured_qubits,
)
from kdbench.quantum.shift import SHIFTABLE_GATES, ParameterShift, Sampler, Slots, split_slots
from kdbench.quantum.shots import ShotSampler, draw_frequencies, smoothed, smoothing_option
from kdbench.quantum.tensors import call_dtype, complex_dtype, constant_tensor, product_state
