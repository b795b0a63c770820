"""kdbench: a plugin-based benchmarking harness for classical-to-quantum knowledge distillation.

This module is the whole plugin SDK: a plugin imports what it needs from `kdbench` and from
nothing below it. The base classes, options and errors load at once; the circuit toolkit
(for backend authors) and the data-file toolkit (for data set authors) load on first use,
so that `import kdbench` stays free of torch and qiskit.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from kdbench.api import (
    Backend,
    CircuitFunction,
    CircuitPlan,
    Component,
    Dataset,
    DistillBatch,
    Distiller,
    Encoder,
    Loss,
    Student,
    StudentContext,
    Teacher,
    as_image,
)
from kdbench.errors import (
    ConfigError,
    DataError,
    KdbenchError,
    OptionError,
    PluginError,
    did_you_mean,
    one_of,
)
from kdbench.hookspecs import hookimpl
from kdbench.options import option, preset
from kdbench.plugins import component

try:
    __version__ = version("kdbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

# name -> module that defines it, imported when the name is first used.
_LAZY = {
    # The circuit toolkit, for backend authors (kdbench.quantum).
    "CircuitCounters": "kdbench.quantum",
    "amplitude_angles": "kdbench.quantum",
    "amplitude_circuit": "kdbench.quantum",
    "amplitudes_from_angles": "kdbench.quantum",
    "AMPLITUDES": "kdbench.quantum",
    "EXACT_GATES": "kdbench.quantum",
    "ParameterShift": "kdbench.quantum",
    "PrimitiveSampler": "kdbench.quantum",
    "Sampler": "kdbench.quantum",
    "SHIFTABLE_GATES": "kdbench.quantum",
    "Slots": "kdbench.quantum",
    "bind_order": "kdbench.quantum",
    "bit_array_probabilities": "kdbench.quantum",
    "call_dtype": "kdbench.quantum",
    "check_circuit_call": "kdbench.quantum",
    "complex_dtype": "kdbench.quantum",
    "constant_tensor": "kdbench.quantum",
    "decompose_to": "kdbench.quantum",
    "depolarizing_option": "kdbench.quantum",
    "depolarizing_targets": "kdbench.quantum",
    "device_noise_model": "kdbench.quantum",
    "draw_frequencies": "kdbench.quantum",
    "exact_definition": "kdbench.quantum",
    "fake_backend": "kdbench.quantum",
    "fake_backends": "kdbench.quantum",
    "gets_depolarizing": "kdbench.quantum",
    "is_fake_name": "kdbench.quantum",
    "linear_angle": "kdbench.quantum",
    "linear_form": "kdbench.quantum",
    "load_noise_model": "kdbench.quantum",
    "measured": "kdbench.quantum",
    "measured_qubits": "kdbench.quantum",
    "names_device": "kdbench.quantum",
    "noise_source": "kdbench.quantum",
    "parameter_columns": "kdbench.quantum",
    "product_state": "kdbench.quantum",
    "ShotSampler": "kdbench.quantum",
    "smoothed": "kdbench.quantum",
    "smoothing_option": "kdbench.quantum",
    "split_slots": "kdbench.quantum",
    "varying_angles": "kdbench.quantum",
    # Stacked training, for student authors: S models' forward at once (kdbench.stacked).
    "NotStackable": "kdbench.stacked",
    "params_of": "kdbench.stacked",
    "stacked_call": "kdbench.stacked",
    # The data-file toolkit, for data set authors (kdbench.fetch).
    "FetchReport": "kdbench.fetch",
    "apt_download": "kdbench.fetch",
    "install_idx": "kdbench.fetch",
    "npm_pack": "kdbench.fetch",
    "reachable": "kdbench.fetch",
    "verify_files": "kdbench.fetch",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kdbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


if TYPE_CHECKING:  # for type checkers and editors: the lazy names, as if imported here
    from kdbench.fetch import (  # noqa: F401
        FetchReport,
        apt_download,
        install_idx,
        npm_pack,
        reachable,
        verify_files,
    )
    from kdbench.quantum import (  # noqa: F401
        AMPLITUDES,
        EXACT_GATES,
        SHIFTABLE_GATES,
        CircuitCounters,
        ParameterShift,
        PrimitiveSampler,
        Sampler,
        ShotSampler,
        Slots,
        amplitude_angles,
        amplitude_circuit,
        amplitudes_from_angles,
        bind_order,
        bit_array_probabilities,
        call_dtype,
        check_circuit_call,
        complex_dtype,
        constant_tensor,
        decompose_to,
        depolarizing_option,
        depolarizing_targets,
        device_noise_model,
        draw_frequencies,
        exact_definition,
        fake_backend,
        fake_backends,
        gets_depolarizing,
        is_fake_name,
        linear_angle,
        linear_form,
        load_noise_model,
        measured,
        measured_qubits,
        names_device,
        noise_source,
        parameter_columns,
        product_state,
        smoothed,
        smoothing_option,
        split_slots,
        varying_angles,
    )
    from kdbench.stacked import NotStackable, params_of, stacked_call  # noqa: F401

__all__ = [
    # components, options, plugins
    "Backend",
    "CircuitFunction",
    "CircuitPlan",
    "Component",
    "Dataset",
    "DistillBatch",
    "Distiller",
    "Encoder",
    "Loss",
    "Student",
    "StudentContext",
    "Teacher",
    "as_image",
    "component",
    "hookimpl",
    "option",
    "preset",
    # errors
    "ConfigError",
    "DataError",
    "KdbenchError",
    "OptionError",
    "PluginError",
    "did_you_mean",
    "one_of",
    "__version__",
    *_LAZY,  # loaded on first use
]
