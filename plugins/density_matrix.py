"""The `density-matrix` backend: exact noisy simulation in torch, gradients by autograd."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from kdbench import (
    Backend,
    CircuitCounters,
    CircuitPlan,
    KdbenchError,
    ShotSampler,
    call_dtype,
    check_circuit_call,
    complex_dtype,
    constant_tensor,
    decompose_to,
    depolarizing_option,
    fake_backend,
    gets_depolarizing,
    hookimpl,
    linear_form,
    load_noise_model,
    measured,
    measured_qubits,
    names_device,
    noise_source,
    option,
    parameter_columns,
    product_state,
    smoothing_option,
)

if TYPE_CHECKING:  # qiskit is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit
    from qiskit_aer.noise import NoiseModel

# Operations with no effect on the outcome probabilities of the final measurement.
_SKIPPED = frozenset({"measure", "barrier", "delay"})
# A gate's matrix as A + cos(ωθ)·B + sin(ωθ)·C: ω = 1/2 for rotations, 1 for phase gates.
_FREQUENCIES = (0.5, 1.0)
_MATRIX_TOL = 1e-12


@dataclass(kw_only=True)
class DensityMatrix(Backend):
    """Exact batched density-matrix simulation in torch, autograd gradients, optional noise.

    With `noise` naming a fake IBM device, the circuit is transpiled once to the device's
    gates and layout (as the `aer` backend does), and the device's noise model
    (`NoiseModel.from_backend`: a depolarizing error and thermal relaxation from T1, T2 and
    the gate times after every gate, and each qubit's readout confusion matrix) is applied:
    gate errors as quantum channels after each gate, readout errors on the outcome
    probabilities. `noise` may instead be the path of a pickled `qiskit_aer` NoiseModel: the
    circuit is then transpiled to the model's basis gates, its qubit i on the model's qubit
    i. `depolarizing` adds a uniform depolarizing error after every 1- and 2-qubit gate (on
    top of the device's, as in the `aer` backend). Without either, it equals the statevector
    backend.

    How it runs: the gates on each qubit before its first multi-qubit gate (the encoding)
    make a product of 2x2 density matrices, per sample; the gates after the last one that
    reads an input (the trainable layers) run backwards, in the Heisenberg picture, on the
    measured observables (the readout confusion folded in) once per call, whatever the
    batch; what lies between runs on the batch's [B, 2^n, 2^n] density matrices. Gates and
    their errors on at most 2 qubits are fused into one superoperator each. With `shots`,
    the probabilities are replaced by multinomial frequencies (straight-through gradients,
    as in the statevector backend).
    """

    name: ClassVar[str] = "density-matrix"

    noise: str | None = option(
        None,
        help="fake IBM device whose gates, layout and noise to use (e.g. FakeManilaV2), or the "
        "path of a pickled qiskit_aer NoiseModel (default: noiseless)",
    )
    depolarizing: float | None = depolarizing_option()
    readout: bool = option(True, help="apply the noise model's readout errors", recorded_if="noise")
    shots: int | None = option(
        None,
        help="sample this many shots per circuit (multinomial) instead of exact probabilities",
        minimum=1,
    )
    smoothing: float = smoothing_option(recorded_if="shots")
    optimization_level: int = option(
        1, help="transpiler optimization level", minimum=0, maximum=3, recorded_if="noise"
    )

    def check(self) -> None:
        """Reject a `noise` that is neither a fake device nor a saved noise model."""
        if self.noise is None:
            return
        if names_device(self.noise):
            fake_backend(self.noise, "noise")
        else:
            load_noise_model(self.noise)

    def compile(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        seed: int,
    ) -> CompiledDensityMatrix:
        """Transpile `circuit` (with `noise`) and compile it once; raise ValueError for a gate
        or angle it cannot simulate, KdbenchError for a circuit wider than the device."""
        isa, noise_model = self.transpiled(circuit, seed)
        return CompiledDensityMatrix(
            isa,
            inputs,
            weights,
            noise_model=noise_model,
            depolarizing=self.depolarizing or 0.0,
            readout=self.readout,
            shots=self.shots,
            seed=seed,
            smoothing=self.smoothing,
        )

    def transpiled(self, circuit: QuantumCircuit, seed: int) -> tuple[QuantumCircuit, Any]:
        """(the measured circuit as it is simulated, the noise model or None)."""
        if self.noise is None:
            return measured(decompose_to(circuit, ())), None
        from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager

        noise_model = noise_source(self.noise)
        if names_device(self.noise):
            device = fake_backend(self.noise, "noise")()
            self._check_width(circuit, device.num_qubits)
            manager = generate_preset_pass_manager(
                optimization_level=self.optimization_level, backend=device, seed_transpiler=seed
            )
        else:
            gates = sorted(set(noise_model.basis_gates) - {"for_loop", "if_else", "switch_case"})
            manager = generate_preset_pass_manager(
                optimization_level=self.optimization_level,
                basis_gates=gates,
                seed_transpiler=seed,
            )
        return manager.run(measured(circuit)), noise_model

    def check_circuit(self, plan: CircuitPlan) -> None:
        """Refuse a circuit wider than the noise device, or whose density matrices cannot fit
        in memory: 4^n complex amplitudes per sample (float32 students: 8 bytes), kept for
        autograd once per gate when the gates between the encoding and the trainable layers
        read inputs (an upper estimate), and the 2^n observables of the readout."""
        if self.noise is not None and names_device(self.noise):
            self._check_width(plan.circuit, fake_backend(self.noise, "noise")().num_qubits)
        n = plan.circuit.num_qubits
        rows = max(plan.train_batch or 0, plan.eval_batch)
        kept = len(plan.circuit.data) + 3 if plan.train_batch else 2
        needed = 4**n * 8 * (rows * kept + 2**n * 2)
        self.check_memory(
            needed,
            f"a {n}-qubit circuit on batches of {rows} ({rows} × {kept} density matrices of "
            f"4^{n} complex64 entries, and 2^{n} observables)",
        )

    def _check_width(self, circuit: QuantumCircuit, device_qubits: int) -> None:
        if circuit.num_qubits > device_qubits:
            raise KdbenchError(
                f"density-matrix: the circuit has {circuit.num_qubits} qubits, noise device "
                f"'{self.noise}' only {device_qubits}"
            )


@hookimpl
def register_backends(register) -> None:
    """Register the density-matrix backend."""
    register(DensityMatrix)


# ---------------------------------------------------------------------------------------
# Compiling: gates and their errors, as superoperators on at most 2 qubits


@dataclass
class _Step:
    """One gate and the error after it, on `qubits` (indices of the simulated qubits; bit j
    of the matrices' index is qubits[j], as in Qiskit): matrix = A + cos(ω·angle)·B +
    sin(ω·angle)·C with `angle` a column of the angle table (None: the matrix is A), then
    the channel `noise` (its Kraus operators, None: no error)."""

    qubits: tuple[int, ...]
    terms: tuple[np.ndarray, np.ndarray, np.ndarray]
    frequency: float = 0.0
    angle: int | None = None
    noise: list[np.ndarray] | None = None
    reads_inputs: bool = False

    def embedded(self, block: tuple[int, ...]) -> _Step:
        """The same step on the qubits of `block` (a superset), identity elsewhere."""
        if block == self.qubits:
            return self
        terms = tuple(_embed(m, self.qubits, block) for m in self.terms)
        noise = None if self.noise is None else [_embed(k, self.qubits, block) for k in self.noise]
        return _Step(block, terms, self.frequency, self.angle, noise, self.reads_inputs)


def _superop(kraus: Sequence[np.ndarray]) -> np.ndarray:
    """The superoperator of a channel: vec(E(ρ)) = S vec(ρ), vec row-major (index r·d + c)."""
    return sum(np.kron(k, k.conj()) for k in kraus)


def _embed(matrix: np.ndarray, qubits: tuple[int, ...], block: tuple[int, ...]) -> np.ndarray:
    """`matrix` on `qubits` as a matrix on `block` ⊇ qubits (identity on the others)."""
    k, n = len(qubits), len(block)
    tensor = matrix.reshape([2] * (2 * k))  # axes: out bits k-1..0, in bits k-1..0
    out = np.zeros([2] * (2 * n), dtype=complex)
    others = [q for q in block if q not in qubits]
    position = {q: n - 1 - block.index(q) for q in block}  # axis of qubit q's bit
    for other in np.ndindex(*([2] * len(others))):
        index: list[Any] = [slice(None)] * (2 * n)
        for q, bit in zip(others, other, strict=True):
            index[position[q]] = bit
            index[n + position[q]] = bit
        # The remaining axes are `qubits` in block order; the matrix's axes are in its order.
        order = sorted(qubits, key=lambda q: position[q])
        perm = [k - 1 - qubits.index(q) for q in order]
        out[tuple(index)] = tensor.transpose(perm + [k + p for p in perm])
    return out.reshape(2**n, 2**n)


def _gate_terms(operation: Any, where: str) -> tuple[tuple[np.ndarray, ...], float, Any]:
    """((A, B, C), ω, the angle expression or None) of a gate's matrix A + cos(ωθ)B + sin(ωθ)C."""
    from qiskit.circuit import ParameterExpression
    from qiskit.quantum_info import Operator

    varying = [
        i
        for i, p in enumerate(operation.params)
        if isinstance(p, ParameterExpression) and p.parameters
    ]
    try:
        if not varying:
            matrix = Operator(operation).data
            zero = np.zeros_like(matrix)
            return (matrix, zero, zero), 0.0, None
        if len(varying) > 1:
            raise ValueError(f"{where}: more than one angle depends on parameters")
        slot = varying[0]

        def at(angle: float) -> np.ndarray:
            gate = operation.to_mutable()
            gate.params = [angle if i == slot else p for i, p in enumerate(operation.params)]
            return Operator(gate).data

        for omega in _FREQUENCIES:
            zero, half, full = at(0.0), at(math.pi / (2 * omega)), at(math.pi / omega)
            a, b = (zero + full) / 2, (zero - full) / 2
            c = half - a
            if all(
                np.allclose(
                    at(t), a + math.cos(omega * t) * b + math.sin(omega * t) * c, atol=_MATRIX_TOL
                )
                for t in (0.37, -1.9)
            ):
                return (a, b, c), omega, operation.params[slot]
    except ValueError:
        raise
    except Exception as error:  # Qiskit raises several kinds for a gate without a matrix
        raise ValueError(f"{where}: no matrix ({error})") from None
    raise ValueError(f"{where}: its matrix is not a rotation or phase in its angle")


class _Compiler:
    """Walks a measured, transpiled circuit once: its steps, angle table and readout."""

    def __init__(
        self,
        isa: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        noise_model: NoiseModel | None,
        depolarizing: float,
        readout: bool,
    ):
        self.noise_model, self.depolarizing = noise_model, depolarizing
        columns = parameter_columns(inputs, weights)
        self.num_inputs = len(inputs)
        used = {
            isa.find_bit(q).index
            for instruction in isa.data
            if instruction.operation.name not in ("barrier", "delay")
            for q in instruction.qubits
        }
        # Only the qubits a gate or a measurement touches are simulated: a fake device has
        # up to 133, a student uses a few (an idle qubit has no error in Aer's device models).
        self.physical = sorted(used)
        index = {q: i for i, q in enumerate(self.physical)}
        self.measured = [index[q] for q in measured_qubits(isa)]
        self.slopes: list[dict[int, float]] = []
        self.offsets: list[float] = []
        self.steps: list[_Step] = []
        self._kraus_cache: dict[tuple[str, tuple[int, ...]], list[np.ndarray] | None] = {}
        for instruction in isa.data:
            operation = instruction.operation
            physical = tuple(isa.find_bit(q).index for q in instruction.qubits)
            where = f"density-matrix backend: gate '{operation.name}' on qubits {list(physical)}"
            if operation.name in _SKIPPED:
                continue
            if operation.name == "reset" or operation.num_clbits:
                raise ValueError(f"{where}: only unitary gates and final measurements run here")
            if len(physical) > 2:
                raise ValueError(f"{where}: gates on more than 2 qubits are not supported")
            terms, omega, angle = _gate_terms(operation, where)
            step = _Step(tuple(index[q] for q in physical), terms, omega)
            if angle is not None:
                slopes, offset = linear_form(angle, columns, where)
                step.angle = len(self.slopes)
                step.reads_inputs = any(c < self.num_inputs for c in slopes)
                self.slopes.append(slopes)
                self.offsets.append(offset)
            step.noise = self._error(operation.name, physical)
            self.steps.append(step)
        errors = _NoiseErrors(noise_model)
        if "measure" in errors.noisy_instructions():
            raise ValueError(
                "density-matrix backend: the noise model has quantum errors on 'measure'; only "
                "readout errors (ReadoutError) on measurements are supported"
            )
        if readout and errors.correlated_readout():
            raise ValueError(
                "density-matrix backend: correlated readout errors on several qubits are not "
                "supported; the noise model has them"
            )
        self.confusion = [
            self._confusion(self.physical[q]) if readout else np.eye(2) for q in self.measured
        ]

    def _error(self, name: str, physical: tuple[int, ...]) -> list[np.ndarray] | None:
        """The Kraus operators of the error after gate `name` on `physical`, or None: the
        noise model's (local, else all-qubit, as Aer applies them), then the uniform
        depolarizing."""
        key = (name, physical)
        if key in self._kraus_cache:
            return self._kraus_cache[key]
        from qiskit.quantum_info import Kraus
        from qiskit_aer.noise import depolarizing_error

        error = _NoiseErrors(self.noise_model).after(name, physical)
        if self.depolarizing and gets_depolarizing(name, len(physical)):
            uniform = depolarizing_error(self.depolarizing, len(physical))
            error = uniform if error is None else error.compose(uniform)
        kraus = None if error is None else list(Kraus(error.to_quantumchannel()).data)
        self._kraus_cache[key] = kraus
        return kraus

    def _confusion(self, physical: int) -> np.ndarray:
        """P(read m | state t) as [t, m] for `physical`'s measurement (identity: none)."""
        error = _NoiseErrors(self.noise_model).readout(physical)
        return np.eye(2) if error is None else np.asarray(error.probabilities, dtype=float)


class _NoiseErrors:
    """The errors an Aer `NoiseModel` applies, looked up as Aer's simulator applies them.

    The one place that reads the model's private maps: its public API (qiskit-aer 0.18) adds
    errors and serializes them (`to_dict`, instruction lists no public call turns back into
    `QuantumError`s), but has no lookup of the error after a gate on given qubits.
    """

    def __init__(self, model: NoiseModel | None):
        self.model = model

    def after(self, name: str, physical: tuple[int, ...]) -> Any:
        """The QuantumError after gate `name` on `physical` (local, else all-qubit), or None."""
        if self.model is None:
            return None
        local = self.model._local_quantum_errors.get(name, {})
        return local.get(physical, self.model._default_quantum_errors.get(name))

    def readout(self, physical: int) -> Any:
        """The ReadoutError of `physical`'s measurement (local, else all-qubit), or None."""
        if self.model is None:
            return None
        local = self.model._local_readout_errors
        return local.get((physical,), self.model._default_readout_error)

    def noisy_instructions(self) -> set[str]:
        """Instructions that carry a quantum error somewhere."""
        if self.model is None:
            return set()
        return {*self.model._local_quantum_errors, *self.model._default_quantum_errors}

    def correlated_readout(self) -> bool:
        """Whether a readout error spans several qubits."""
        return self.model is not None and any(
            len(qubits) > 1 for qubits in self.model._local_readout_errors
        )


# ---------------------------------------------------------------------------------------
# Running


@dataclass
class _Block:
    """Steps on the same at most 2 qubits, run as one superoperator: constant runs are
    multiplied out at compile time, the angle-dependent steps multiplied in per call."""

    qubits: tuple[int, ...]
    steps: list[_Step] = field(default_factory=list)


def _blocks(steps: list[_Step]) -> list[_Block]:
    """Fuse steps into blocks on at most 2 qubits: a step joins the block that last touched
    all its qubits when that block covers them; a 2-qubit step takes in the 1-qubit blocks
    that are the last on its qubits. Moving a step or block past others on other qubits
    keeps the circuit's meaning: they commute."""
    blocks: list[_Block | None] = []
    last: dict[int, int] = {}
    for step in steps:
        owners = {last.get(q) for q in step.qubits}
        if len(owners) == 1 and None not in owners:
            block = blocks[owners.pop()]  # type: ignore[index]
            if block is not None and set(step.qubits) <= set(block.qubits):
                block.steps.append(step)
                continue
        new = _Block(step.qubits)
        if len(step.qubits) == 2:
            for q in step.qubits:
                index = last.get(q)
                old = None if index is None else blocks[index]
                if old is not None and old.qubits == (q,):
                    new.steps += old.steps
                    blocks[index] = None  # type: ignore[index]
        new.steps.append(step)
        blocks.append(new)
        for q in step.qubits:
            last[q] = len(blocks) - 1
    return [b for b in blocks if b is not None]


class _Local:
    """A superoperator on some qubits applied to rows of vectorized density matrices (or
    observables) [R, 4^n]: a gather puts the qubits' row and column bits last, a matmul
    applies it, a gather puts them back."""

    def __init__(self, qubits: tuple[int, ...], num_qubits: int):
        d, k = 2**num_qubits, len(qubits)
        r, c = np.divmod(np.arange(d * d), d)
        local_r = sum(((r >> q) & 1) << j for j, q in enumerate(qubits))
        local_c = sum(((c >> q) & 1) << j for j, q in enumerate(qubits))
        mask = sum(1 << q for q in qubits)
        _, rest = np.unique((r & ~mask) * d + (c & ~mask), return_inverse=True)
        position = rest * 4**k + local_r * 2**k + local_c
        self.gather = np.empty(d * d, dtype=np.int64)
        self.gather[position] = np.arange(d * d)
        self.scatter = np.argsort(self.gather)
        self.size = 4**k
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def apply(self, rows: torch.Tensor, superop: torch.Tensor, adjoint: bool) -> torch.Tensor:
        """rows [R, 4^n] with `superop` S ([4^k, 4^k] or [R, 4^k, 4^k]) applied to each; with
        `adjoint`, rows are observables Q read as <Q, vec ρ>, and <Q, S vec ρ> = <Sᵀ Q, vec ρ>:
        each becomes Sᵀ Q."""
        if rows.device not in self._cache:
            self._cache[rows.device] = (
                torch.from_numpy(self.gather).to(rows.device),
                torch.from_numpy(self.scatter).to(rows.device),
            )
        gather, scatter = self._cache[rows.device]
        local = rows.index_select(1, gather).reshape(len(rows), -1, self.size)
        # Each row's local part x becomes S x, or Sᵀ x for the adjoint.
        out = local @ (superop if adjoint else superop.transpose(-1, -2))
        return out.reshape(len(rows), -1).index_select(1, scatter)


def _kron_terms(step: _Step) -> np.ndarray:
    """[5, d², d²]: U ⊗ conj(U) of the step's gate U = A + cB + sC (c, s = cos, sin ωθ) as
    T_0 + c·T_1 + s·T_2 + cos(2ωθ)·T_3 + sin(2ωθ)·T_4 (c² = (1 + cos 2ωθ)/2, ...)."""

    def k(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.kron(x, y.conj())

    a, b, c = step.terms
    return np.stack(
        [
            k(a, a) + (k(b, b) + k(c, c)) / 2,
            k(a, b) + k(b, a),
            k(a, c) + k(c, a),
            (k(b, b) - k(c, c)) / 2,
            (k(b, c) + k(c, b)) / 2,
        ]
    )


class _Factors:
    """Superoperators F_g = Σ_j φ_j(ω_g·angle_g)·T_gj of several gates at once per call, the
    T_gj fixed ([G, 5, d², d²]: each gate's U ⊗ conj(U) terms with its neighbouring
    constant runs multiplied in), φ = (1, cos, sin, cos 2·, sin 2·): one einsum for all."""

    def __init__(self, terms: np.ndarray, frequency: Sequence[float], columns: Sequence[int]):
        self.terms = terms
        self.frequency = np.asarray(frequency, dtype=float)
        self.columns = np.asarray(columns, dtype=np.int64)
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def __call__(self, angles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """angles [R, all] -> [R, G, d², d²] in `dtype` (real: the terms are)."""
        key = (angles.device, dtype)
        if key not in self._cache:
            self._cache[key] = (
                constant_tensor(self.terms, angles.device, dtype),
                torch.from_numpy(self.frequency).to(angles.device, angles.dtype),
                torch.from_numpy(self.columns).to(angles.device),
            )
        terms, frequency, columns = self._cache[key]
        theta = angles[:, columns] * frequency  # [R, G]
        phi = torch.stack(
            [torch.ones_like(theta), theta.cos(), theta.sin(), (2 * theta).cos(),
             (2 * theta).sin()], -1,
        )  # fmt: skip
        return torch.einsum("rgj,gjab->rgab", phi.to(terms.dtype), terms)


class _FusedBlock:
    """A block's superoperator S = C_m·K_m···C_1·K_1·C_0 (K_g = U_g ⊗ conj(U_g) of its
    angle-dependent gates, C_g the constant runs between them, multiplied out once) as the
    factors F_g = C_g·K_g, C_0 folded into F_1 unless `keep_first`."""

    def __init__(self, block: _Block, keep_first: bool = False):
        self.qubits = block.qubits
        d2 = 4 ** len(block.qubits)
        self.reads_inputs = any(s.reads_inputs for s in block.steps)
        runs: list[np.ndarray] = []
        varying: list[_Step] = []
        current = np.eye(d2, dtype=complex)
        for step in (s.embedded(block.qubits) for s in block.steps):
            noise = np.eye(d2) if step.noise is None else _superop(step.noise)
            if step.angle is None:
                a = step.terms[0]
                current = noise @ np.kron(a, a.conj()) @ current
            else:
                runs.append(current)
                varying.append(step)
                current = noise
        runs.append(current)
        self.first = runs[0]  # C_0: the whole block when no angle varies
        self.terms = [runs[g + 1] @ _kron_terms(step) for g, step in enumerate(varying)]
        if self.terms and not keep_first:
            self.terms[0] = self.terms[0] @ self.first
        self.frequency = [s.frequency for s in varying]
        self.columns = [s.angle for s in varying]
        self._cache: dict[tuple, torch.Tensor] = {}

    def constant(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """C_0 on `device` in `dtype`."""
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = constant_tensor(self.first, device, dtype)
        return self._cache[key]


class _FusedBlocks:
    """Blocks run one after the other; the factors of all their angle-dependent gates are
    computed at once per call, one batch per block width."""

    def __init__(self, blocks: list[_Block], num_qubits: int):
        self.blocks = [_FusedBlock(b) for b in blocks]
        self.locals = [_Local(b.qubits, num_qubits) for b in blocks]
        by_width: dict[int, list[_FusedBlock]] = {}
        self.where: list[tuple[int, int]] = []  # per block: (width, first of its factors)
        for block in self.blocks:
            group = by_width.setdefault(len(block.qubits), [])
            self.where.append((len(block.qubits), sum(len(b.terms) for b in group)))
            group.append(block)
        self.factors = {
            width: _Factors(
                np.concatenate([np.stack(b.terms) for b in group if b.terms]),
                [f for b in group for f in b.frequency],
                [c for b in group for c in b.columns],
            )
            for width, group in by_width.items()
            if any(b.terms for b in group)
        }

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def run(self, rows: torch.Tensor, angles: torch.Tensor, heisenberg: bool) -> torch.Tensor:
        """rows [R, 4^n] through the blocks: forwards on density matrices, or backwards on
        observables (`heisenberg`: each block's adjoint, the last block first). Blocks that
        read no input use the first row of `angles`."""
        factors = {width: f(angles, rows.dtype) for width, f in self.factors.items()}
        order = range(len(self.blocks))
        for i in reversed(order) if heisenberg else order:
            block, (width, start) = self.blocks[i], self.where[i]
            if not block.terms:
                superop = block.constant(rows.device, rows.dtype)
            else:
                mine = factors[width][:, start : start + len(block.terms)]
                superop = mine[:, 0]
                for g in range(1, len(block.terms)):
                    superop = mine[:, g] @ superop
                if not block.reads_inputs:
                    superop = superop[0]
            rows = self.locals[i].apply(rows, superop, heisenberg)
        return rows


class CompiledDensityMatrix(CircuitCounters):
    """A circuit compiled for `DensityMatrix`: call it with inputs [B, n_in], weights [n_w].

    Returns the outcome probabilities [B, 2**num_clbits] of the measured circuit `isa`, bit j
    of the index being classical bit j (logical qubit j: `kdbench.measured` measures qubit j
    into bit j before transpiling), as the statevector backend orders them. `qubits` lists
    the physical qubits simulated.
    """

    def __init__(
        self,
        isa: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        noise_model: NoiseModel | None = None,
        depolarizing: float = 0.0,
        readout: bool = True,
        shots: int | None = None,
        seed: int = 0,
        smoothing: float = 0.0,
    ):
        compiled = _Compiler(isa, inputs, weights, noise_model, depolarizing, readout)
        super().__init__(
            depth=CircuitCounters.gate_depth(isa),
            width=len(compiled.physical),
            shots_per_circuit=shots or 0,
        )
        self.isa = isa
        self.qubits = compiled.physical
        self.num_qubits = n = len(compiled.physical)
        self.num_inputs, self.num_weights = len(inputs), len(weights)
        self._shots = ShotSampler(shots, seed, smoothing) if shots else None
        # angle_g = Σ_c slopes[g, c] · values[c] + offsets[g]
        slopes = np.zeros((len(compiled.slopes), len(inputs) + len(weights)))
        for g, row in enumerate(compiled.slopes):
            for column, slope in row.items():
                slopes[g, column] = slope
        self._slopes_in = torch.from_numpy(slopes[:, : len(inputs)].T.copy())
        self._slopes_w = torch.from_numpy(slopes[:, len(inputs) :].T.copy())
        self._offsets = torch.tensor(compiled.offsets, dtype=torch.float64)

        product, middle, tail = _segments(compiled.steps, n)
        self._product = _ProductState(product, n)
        self._middle = _FusedBlocks(_blocks(middle), n)
        self._tail = _FusedBlocks(_blocks(tail), n)
        self._observables = _observables(compiled.confusion, compiled.measured, n)
        self._paired = _paired_order(n)
        # Real gates and real errors (H, RY, CX, depolarizing: Y ⊗ conj(Y) is real) keep every
        # density matrix real: simulated in the real dtype, half the arithmetic.
        self.is_real = _is_real(
            self._product.start,
            *(f.terms for f in self._product.positions),
            *(b.first for part in (self._middle, self._tail) for b in part.blocks),
            *(f.terms for part in (self._middle, self._tail) for f in part.factors.values()),
        )
        self._tensors: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """inputs [B, n_inputs], weights [n_weights] -> probabilities [B, 2**num_clbits]."""
        check_circuit_call(inputs, weights, self.num_inputs, self.num_weights)
        dtype = call_dtype(inputs, weights)
        device, batch = inputs.device, inputs.shape[0]
        slopes_in, slopes_w, offsets, observables, paired = self._on(device, dtype)
        weight_angles = (weights.to(device, dtype) @ slopes_w + offsets)[None]  # [1, G]
        angles = inputs.to(dtype) @ slopes_in + weight_angles  # [B, G]

        # The trainable layers, backwards on the observables: once per call.
        observables = self._tail.run(observables, weight_angles, heisenberg=True)
        state_dtype = self._state_dtype(dtype)
        # [B or 1, 4^n], the paired order
        state = self._product.vector(angles, state_dtype)
        if self._middle:
            rows = state.expand(batch, -1)[:, paired.argsort()]  # to row-major [B, 4^n]
            rows = self._middle.run(rows, angles.expand(batch, -1), heisenberg=False)
            probs = rows @ observables.T
        else:
            probs = (state @ observables[:, paired].T).expand(batch, -1)
        if probs.is_complex():
            probs = probs.real
        self.count(batch)
        probs = probs.clamp_min(0.0)  # rounding: a probability is never below 0
        return probs if self._shots is None else self._shots(probs)

    def _state_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The density matrices' dtype for angles in `dtype`."""
        return dtype if self.is_real else complex_dtype(dtype)

    def _on(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The angle table, the observables and the pairing on `device`, copied there once."""
        key = (device, dtype)
        if key not in self._tensors:
            self._tensors[key] = (
                self._slopes_in.to(device, dtype),
                self._slopes_w.to(device, dtype),
                self._offsets.to(device, dtype),
                constant_tensor(self._observables, device, self._state_dtype(dtype)),
                torch.from_numpy(self._paired).to(device),
            )
        return self._tensors[key]


def _is_real(*arrays: np.ndarray) -> bool:
    return all(np.abs(np.imag(a)).max(initial=0.0) < _MATRIX_TOL for a in arrays)


def _segments(steps: list[_Step], n: int) -> tuple[list[_Step], list[_Step], list[_Step]]:
    """(product, middle, tail): each qubit's 1-qubit steps before its first multi-qubit step
    (a product state); the steps after the last one that reads an input on their qubits
    (input-free: run on the observables); the rest, in order. Each qubit's steps keep their
    order, so the three run one after the other mean the same circuit."""
    product, rest = [], []
    entangled: set[int] = set()
    for step in steps:
        if len(step.qubits) == 1 and step.qubits[0] not in entangled:
            product.append(step)
        else:
            entangled.update(step.qubits)
            rest.append(step)
    tail: list[_Step] = []
    middle: list[_Step] = []
    blocked: set[int] = set()
    for step in reversed(rest):
        if step.reads_inputs or blocked.intersection(step.qubits):
            blocked.update(step.qubits)
            middle.append(step)
        else:
            tail.append(step)
    return product, middle[::-1], tail[::-1]


class _ProductState:
    """Each qubit's 2x2 density matrix after its leading 1-qubit steps, per sample, as the
    vectorized product [R, 4^n] in the paired order (qubit n-1's (row, column) bits most
    significant). The k-th angle-dependent gate of every qubit runs at once."""

    def __init__(self, steps: list[_Step], n: int):
        self.n = n
        per_qubit = [
            _FusedBlock(_Block((q,), [s for s in steps if s.qubits == (q,)]), keep_first=True)
            for q in range(n)
        ]
        # C_0 applied to |0><0| (vectorized: (1, 0, 0, 0)), per qubit.
        self.start = np.stack([b.first[:, 0] for b in per_qubit])  # [n, 4]
        identity = np.zeros((5, 4, 4), dtype=complex)
        identity[0] = np.eye(4)
        self.positions = []
        for k in range(max((len(b.terms) for b in per_qubit), default=0)):
            have = [k < len(b.terms) for b in per_qubit]
            self.positions.append(
                _Factors(
                    np.stack(
                        [
                            b.terms[k] if h else identity
                            for b, h in zip(per_qubit, have, strict=True)
                        ]
                    ),
                    [b.frequency[k] if h else 0.0 for b, h in zip(per_qubit, have, strict=True)],
                    [b.columns[k] if h else 0 for b, h in zip(per_qubit, have, strict=True)],
                )
            )
        self._cache: dict[tuple, torch.Tensor] = {}

    def vector(self, angles: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """[R, 4^n] in `dtype`; R = 1 when no angle here reads an input."""
        key = (angles.device, dtype)
        if key not in self._cache:
            self._cache[key] = constant_tensor(self.start, angles.device, dtype)
        qubits = self._cache[key][None]  # [1, n, 4]
        for factors in self.positions:
            qubits = (factors(angles, dtype) @ qubits[..., None])[..., 0]  # [R, n, 4]
        return product_state(qubits)


def _observables(confusion: list[np.ndarray], measured: list[int], n: int) -> np.ndarray:
    """[2^m, 4^n] vectorized diagonal observables: outcome j's probability is <O_j, ρ>, the
    product over classical bits of P(read bit | the measured qubit's state)."""
    d = 2**n
    basis = np.arange(d)
    outcomes = np.arange(2 ** len(measured))
    weight = np.ones((len(outcomes), d))
    for bit, (qubit, matrix) in enumerate(zip(measured, confusion, strict=True)):
        state = (basis >> qubit) & 1
        read = (outcomes >> bit) & 1
        weight *= matrix[state[None, :], read[:, None]]
    out = np.zeros((len(outcomes), d, d), dtype=complex)
    out[:, basis, basis] = weight
    return out.reshape(len(outcomes), d * d)


def _paired_order(n: int) -> np.ndarray:
    """The row-major index (r·2^n + c) of each position of the paired order, whose digits in
    base 4 are (r_q, c_q) from qubit n-1 down to 0."""
    d = 2**n
    position = np.arange(d * d)
    r = sum(((position >> (2 * q + 1)) & 1) << q for q in range(n))
    c = sum(((position >> (2 * q)) & 1) << q for q in range(n))
    return (r * d + c).astype(np.int64)
