"""The exact statevector backend: a parameterized Qiskit circuit as a torch function."""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch

from kdbench import (
    Backend,
    CircuitCounters,
    CircuitPlan,
    ParameterShift,
    ShotSampler,
    call_dtype,
    check_circuit_call,
    complex_dtype,
    constant_tensor,
    decompose_to,
    hookimpl,
    linear_angle,
    option,
    parameter_columns,
    product_state,
    smoothing_option,
    split_slots,
)

if TYPE_CHECKING:  # qiskit is slow to import; it is imported when a circuit is compiled
    from qiskit.circuit import Parameter, QuantumCircuit

# Operations with no effect on the probabilities before the final measurement.
_SKIPPED = frozenset({"measure", "barrier"})
# Gates that map each basis state to one basis state times a phase, with no angle.
_FIXED_MONOMIAL = frozenset({"id", "x", "y", "z", "s", "sdg", "t", "cx", "cz", "swap", "ccx"})
_ROTATIONS = frozenset({"rx", "ry", "rz", "p"})
SUPPORTED_GATES = tuple(sorted(_FIXED_MONOMIAL | _ROTATIONS | {"h"}))
"""Names of the Qiskit gates the statevector backend simulates."""

# Below this, an imaginary part is rounding noise (phases are products of unit numbers).
_IMAG_TOL = 1e-12
FUSE_MAX_QUBITS = 6
"""Circuits up to this width get product-state and weight-block fusion: a fused block is a
dense 2^n x 2^n matrix, whose cost grows as 4^n against 2^n for gate by gate."""


@dataclass(kw_only=True)
class Statevector(Backend):
    """Exact batched statevector simulation in torch, autograd gradients.

    The circuit is compiled once into a short list of tensor operations on a [B, 2**n] state:
    constant permutation and phase gates (x, y, z, s, sdg, t, cx, cz, swap, ccx, rz/p with a
    fixed angle) are fused into one gather-and-multiply; h, rx and ry combine the two halves
    of a qubit's axis; rz and p with a parameter multiply by per-sample phases. A circuit of
    real gates (h, x, y, z, ry, cx, cz, swap, ccx, ...) runs in a real dtype.

    Up to FUSE_MAX_QUBITS qubits the compiler fuses further, for any circuit: the leading
    single-qubit gates become a product state (each qubit's 2-vector, multiplied out), and
    every run of gates whose angles involve no input becomes one 2^n x 2^n matrix, built
    per call from the weights (layers of single-qubit gates as Kronecker products) and applied
    to the whole batch in one matmul. The tensor operations per call then no longer grow with
    the gates: they dominated the time of the small circuits students use.

    With `shots` set, each row of probabilities is replaced by the frequencies of `shots`
    multinomial draws (a generator seeded with the compile seed, so runs repeat), smoothed
    with the pseudo-count `smoothing` (`kdbench.ShotSampler`). Gradients
    use the straight-through estimator: the forward value is the sampled frequencies, the
    backward pass is that of the exact probabilities, so training still works.

    With `gradient = "parameter-shift"` the gradients come from `kdbench.ParameterShift`
    instead, run on this simulator's (exact or sampled) probabilities: what a sampling
    backend computes, at torch speed, to check it against autograd or study shot noise.
    """

    name: ClassVar[str] = "statevector"

    shots: int | None = option(
        None,
        help="sample this many shots per circuit (multinomial) instead of exact probabilities",
        minimum=1,
    )
    smoothing: float = smoothing_option(recorded_if="shots")  # exact: nothing to smooth
    gradient: Literal["autograd", "parameter-shift"] = option(
        "autograd",
        help="autograd (exact, through the simulation) or parameter-shift (2 circuits per "
        "rotation and sample, as on a sampling backend)",
    )

    def compile(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        seed: int,
    ) -> CompiledStatevector | ParameterShift:
        """Compile `circuit` once; raise ValueError for an unsupported gate or angle."""
        if self.gradient == "autograd":
            return CompiledStatevector(
                circuit, inputs, weights, shots=self.shots, seed=seed, smoothing=self.smoothing
            )
        slots = split_slots(circuit, inputs, weights)
        # The slot circuit's parameters are all "inputs": one value per slot and row. Its raw
        # frequencies are smoothed once, by ParameterShift.
        run = CompiledStatevector(slots.circuit, slots.parameters, [], shots=self.shots, seed=seed)
        empty = torch.zeros(0, dtype=torch.float64)
        return ParameterShift(
            slots,
            lambda values: run(values, empty.to(values.device)),
            depth=run.depth,
            width=run.width,
            shots_per_circuit=self.shots or 0,
            smoothing=self.smoothing,
        )

    def check_circuit(self, plan: CircuitPlan) -> None:
        """Refuse a circuit whose simulation cannot fit in this machine's memory."""
        estimate = self.memory_needed(plan)
        if estimate is not None:
            self.check_memory(*estimate)

    def memory_needed(self, plan: CircuitPlan) -> tuple[int, str] | None:
        """(bytes, what they are for) at the peak of a cell running `circuit`; None for a
        circuit `compile` refuses (it says why).

        An estimate, its factors a little below what was measured at 20 qubits: a state is
        2**n amplitudes of 4 bytes (float32, the angles' dtype in a float32 student; 8 when
        a gate makes it complex: rx, rz, p, s, sdg, t), twice that with parameter-shift
        (float64 angles). Training with autograd keeps every parameterized rotation's input
        state for the backward pass: R + 3 states per input for R rotations (measured R + 5);
        parameter shift runs 2 circuits per input and shifted weight (their inputs too when
        the front trains, not counted); without gradients 2 states per input (measured 2.6).
        Compiling adds 8 bytes per amplitude (the basis index), 40 while constant
        permutation and phase gates are fused (measured 50-65).
        """
        from qiskit.circuit import ParameterExpression

        circuit, train_batch, eval_batch = plan.circuit, plan.train_batch, plan.eval_batch
        try:
            slots = split_slots(circuit, plan.inputs, plan.weights)
        except ValueError:
            return None
        names = {i.operation.name for i in slots.circuit.data}
        constant = any(
            i.operation.name in _FIXED_MONOMIAL
            or (
                i.operation.name in ("rz", "p")
                and not isinstance(i.operation.params[0], ParameterExpression)
            )
            for i in slots.circuit.data
        )
        n, rotations = circuit.num_qubits, len(slots)
        complex_state = bool(names & {"rx", "rz", "p", "s", "sdg", "t"})
        shift = self.gradient == "parameter-shift"
        itemsize = (4 if not complex_state else 8) * (2 if shift else 1)
        dtype = {4: "float32", 8: "complex64" if complex_state else "float64", 16: "complex128"}
        state = 2**n * itemsize
        tables = 2**n * (40 if constant else 8)
        # (bytes, rows, states per row, what for), without gradients and in training.
        parts = [(eval_batch * 2 * state, eval_batch, 2, f"tested on batches of {eval_batch}")]
        if train_batch is not None:
            if shift:
                rows, kept = max(1, 2 * slots.shifted_in_training) * train_batch, 2
            else:
                rows, kept = train_batch, rotations + 3
            parts.append((rows * kept * state, rows, kept, f"training on batches of {train_batch}"))
        needed, rows, kept, what = max(parts)
        kept_for = ", kept for autograd" if kept > 2 else ""
        return tables + needed, (
            f"a {n}-qubit circuit {what} ({rows} × {kept} states of 2^{n} {dtype[itemsize]} "
            f"amplitudes{kept_for}, and the compiled tables)"
        )


@hookimpl
def register_backends(register) -> None:
    """Register the built-in backends."""
    register(Statevector)


class CompiledStatevector(CircuitCounters):
    """A circuit compiled for `Statevector`: call it with inputs [B, n_in] and weights [n_w].

    Returns the probabilities [B, 2**num_qubits] of all qubits in Qiskit's order (bit q of the
    index is qubit q), as `qiskit.quantum_info.Statevector(...).probabilities()` gives them.
    `executions` counts circuits evaluated (B per call) and `shots` the shots spent (0 when
    exact). `is_real` tells whether the state is simulated in a real dtype. Composite gates
    are expanded into supported ones first (`decompose_to`).
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        inputs: Sequence[Parameter],
        weights: Sequence[Parameter],
        *,
        shots: int | None,
        seed: int,
        fuse: bool = True,
        smoothing: float = 0.0,
    ):
        circuit = decompose_to(circuit, SUPPORTED_GATES)
        super().__init__(
            depth=circuit.depth(), width=circuit.num_qubits, shots_per_circuit=shots or 0
        )
        self.num_qubits = circuit.num_qubits
        self.num_inputs = len(inputs)
        self.num_weights = len(weights)
        self.seed = seed
        self.smoothing = smoothing
        self._shots = ShotSampler(shots, seed, smoothing) if shots else None
        builder = _Builder(circuit, list(inputs), list(weights))
        self.is_real = all(op.real for op in builder.ops)
        self._start, self._ops = None, builder.ops
        if fuse and circuit.num_qubits <= FUSE_MAX_QUBITS:
            weight_only = [column >= len(inputs) for column in builder.columns]
            self._start, self._ops = _fuse(builder.ops, circuit.num_qubits, weight_only)
        # angle_g = slope_g * values[:, column_g] + offset_g; halved where the gate uses θ/2.
        self._columns = torch.tensor(builder.columns, dtype=torch.long)
        self._slopes = torch.tensor(builder.slopes, dtype=torch.float64)
        self._offsets = torch.tensor(builder.offsets, dtype=torch.float64)
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    @property
    def num_operations(self) -> int:
        """How many gate operations one call runs (after fusion; each is a few tensor ops)."""
        return len(self._ops) + (self._start is not None)

    def __call__(self, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """inputs [B, n_inputs], weights [n_weights] -> probabilities [B, 2**num_qubits]."""
        check_circuit_call(inputs, weights, self.num_inputs, self.num_weights)
        dtype = call_dtype(inputs, weights)
        device = inputs.device
        batch = inputs.shape[0]

        cos = sin = None
        if len(self._columns):
            values = torch.cat(
                [inputs.to(dtype), weights.to(device=device, dtype=dtype).expand(batch, -1)], 1
            )
            columns, slopes, offsets = self._angle_table(device, dtype)
            angles = torch.addcmul(offsets, values[:, columns], slopes)
            # One cos and one sin for every parameterized gate of the circuit.
            cos, sin = torch.cos(angles), torch.sin(angles)

        state_dtype = dtype if self.is_real else complex_dtype(dtype)
        if self._start is not None:
            state = self._start.state(cos, sin, batch, state_dtype, device)
        else:
            state = torch.zeros(batch, 2**self.num_qubits, dtype=state_dtype, device=device)
            state[:, 0] = 1
        for op in self._ops:
            state = op.apply(state, cos, sin, self.num_qubits)
        probs = state.square() if self.is_real else state.real.square() + state.imag.square()

        self.count(batch)
        return probs if self._shots is None else self._shots(probs)

    def _angle_table(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The angle table on `device` in `dtype`, copied there once."""
        key = (device, dtype)
        if key not in self._tables:
            self._tables[key] = (
                self._columns.to(device),
                self._slopes.to(device, dtype),
                self._offsets.to(device, dtype),
            )
        return self._tables[key]


def _halves(state: torch.Tensor, qubit: int, num_qubits: int) -> tuple[torch.Tensor, ...]:
    """The amplitudes with qubit `qubit` at 0 and at 1, each [B, 2**(n-1-q), 2**q]."""
    view = state.reshape(state.shape[0], 2 ** (num_qubits - 1 - qubit), 2, 2**qubit)
    return view[:, :, 0], view[:, :, 1]


def _join(new0: torch.Tensor, new1: torch.Tensor) -> torch.Tensor:
    return torch.stack((new0, new1), dim=2).reshape(new0.shape[0], -1)


class _Monomial:
    """new[k] = phase[k] * old[perm[k]]: fused constant permutation and diagonal gates."""

    def __init__(self, perm: np.ndarray | None, phase: np.ndarray | None):
        self.perm, self.phase = perm, phase
        self.real = phase is None or not np.iscomplexobj(phase)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Any, Any]] = {}

    def apply(self, state, cos, sin, num_qubits):
        key = (state.device, state.dtype)
        if key not in self._cache:
            perm = None if self.perm is None else torch.from_numpy(self.perm).to(state.device)
            phase = None if self.phase is None else torch.from_numpy(self.phase)
            self._cache[key] = (perm, None if phase is None else phase.to(state.device, key[1]))
        perm, phase = self._cache[key]
        if perm is not None:
            state = state.index_select(1, perm)
        return state if phase is None else state * phase


class _Fixed1q:
    """A constant single-qubit matrix (h, or rx/ry with a fixed angle)."""

    def __init__(self, qubit: int, matrix: np.ndarray):
        self.qubit = qubit
        self.real = not np.any(matrix.imag)
        self.matrix = matrix.real.copy() if self.real else matrix

    def apply(self, state, cos, sin, num_qubits):
        a0, a1 = _halves(state, self.qubit, num_qubits)
        (m00, m01), (m10, m11) = self.matrix.tolist()
        return _join(m00 * a0 + m01 * a1, m10 * a0 + m11 * a1)


class _Rotation:
    """rx, ry, rz or p whose angle depends on a parameter; column `index` of cos and sin."""

    def __init__(self, kind: str, qubit: int, index: int):
        self.kind, self.qubit, self.index = kind, qubit, index
        self.real = kind == "ry"

    def apply(self, state, cos, sin, num_qubits):
        c = cos[:, self.index, None, None]
        s = sin[:, self.index, None, None]
        if self.kind in ("rz", "p"):
            # Diagonal: one multiply of the [B, L, 2, R] view by per-sample phases [B, 1, 2, 1].
            e1 = torch.complex(c, s)
            e0 = torch.ones_like(e1) if self.kind == "p" else torch.complex(c, -s)
            view = state.reshape(state.shape[0], 2 ** (num_qubits - 1 - self.qubit), 2, -1)
            return (view * torch.stack((e0, e1), dim=2)).reshape(state.shape)
        a0, a1 = _halves(state, self.qubit, num_qubits)
        if self.kind == "ry":
            return _join(c * a0 - s * a1, s * a0 + c * a1)
        minus_i_s = s * -1j
        return _join(c * a0 + minus_i_s * a1, minus_i_s * a0 + c * a1)


def _affine(op: _Fixed1q | _Rotation) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """A single-qubit gate as M = A0 + cos·Ac + sin·As with constant 2x2 matrices, and the
    column of cos and sin it reads (None: a constant gate)."""
    zero, one = np.zeros((2, 2), complex), np.eye(2, dtype=complex)
    if isinstance(op, _Fixed1q):
        return op.matrix.astype(complex), zero, zero, None
    if op.kind == "ry":
        return zero, one, np.array([[0, -1], [1, 0]], complex), op.index
    if op.kind == "rx":
        return zero, one, np.array([[0, -1j], [-1j, 0]]), op.index
    if op.kind == "rz":
        return zero, one, np.diag([-1j, 1j]), op.index
    return (
        np.diag([1, 0]).astype(complex),
        np.diag([0, 1]).astype(complex),
        np.diag([0, 1j]),
        op.index,
    )


class _QubitMatrices:
    """Single-qubit gates on any qubits, as each qubit's 2x2 product [R, n, 2, 2]: the k-th
    gate of every qubit is built at once (one gather and a multiply-add), whatever n."""

    def __init__(self, ops: list, num_qubits: int):
        per_qubit = [[op for op in ops if op.qubit == q] for q in range(num_qubits)]
        self.positions: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]] = []
        for k in range(max(len(gates) for gates in per_qubit)):
            a0 = np.tile(np.eye(2, dtype=complex), (num_qubits, 1, 1))  # no gate: identity
            ac, a_s = np.zeros_like(a0), np.zeros_like(a0)
            columns = np.zeros(num_qubits, dtype=np.int64)
            parameterized = False
            for q, gates in enumerate(per_qubit):
                if k < len(gates):
                    a0[q], ac[q], a_s[q], column = _affine(gates[k])
                    if column is not None:
                        columns[q], parameterized = column, True
            self.positions.append((a0, ac, a_s, columns, parameterized))
        self.real = all(not np.any(m.imag) for p in self.positions for m in p[:3])
        self._cache: dict[tuple[torch.device, torch.dtype], list[tuple]] = {}

    def matrices(self, cos, sin, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """[R, n, 2, 2]: R = the rows of cos and sin, or 1 for constant gates only."""
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = [
                (
                    *(constant_tensor(m, device, dtype) for m in (a0, ac, a_s)),
                    torch.from_numpy(columns).to(device),
                    parameterized,
                )
                for a0, ac, a_s, columns, parameterized in self.positions
            ]
        product = None
        for a0, ac, a_s, columns, parameterized in self._cache[key]:
            if parameterized:
                c, s = cos[:, columns, None, None], sin[:, columns, None, None]
                m = a0 + c * ac + s * a_s
            else:
                m = a0.unsqueeze(0)
            product = m if product is None else m @ product
        return product


class _ProductState:
    """The state after the circuit's leading single-qubit gates on |0...0>: a product state,
    each qubit's first column of its 2x2 product, multiplied out (qubit 0 varies fastest)."""

    def __init__(self, ops: list, num_qubits: int):
        self.block = _QubitMatrices(ops, num_qubits)
        self.real = self.block.real

    def state(self, cos, sin, batch: int, dtype: torch.dtype, device: torch.device):
        state = product_state(self.block.matrices(cos, sin, dtype, device)[..., 0])
        return state.expand(batch, -1) if len(state) == 1 else state


class _Unitary:
    """Gates whose angles involve no input, as one matrix U built per call from the weights
    (the same for every row): layers of single-qubit gates as Kronecker products, constant
    permutations and phases on its rows; the batch is then multiplied by U once."""

    def __init__(self, stages: list):
        self.stages = stages  # _QubitMatrices and _Monomial, in circuit order
        self.real = all(stage.real for stage in stages)

    def apply(self, state, cos, sin, num_qubits):
        dtype, device = state.dtype, state.device
        cos, sin = (None, None) if cos is None else (cos[:1], sin[:1])  # rows are equal
        unitary = None
        for stage in self.stages:
            if isinstance(stage, _Monomial):
                if unitary is None:
                    unitary = torch.eye(2**num_qubits, dtype=dtype, device=device)
                unitary = stage.apply(unitary.T, None, None, num_qubits).T
                continue
            factors = stage.matrices(cos, sin, dtype, device)[0]  # [n, 2, 2]
            layer = factors[-1]
            for q in range(num_qubits - 2, -1, -1):  # qubit 0 is the least significant
                layer = torch.kron(layer, factors[q])
            unitary = layer if unitary is None else layer @ unitary
        return state @ unitary.T


def _fuse(ops: list, num_qubits: int, weight_only: list[bool]) -> tuple[Any, list]:
    """(product state or None, the remaining operations with weight-only runs as _Unitary).

    `weight_only[g]` tells whether angle column g of cos and sin is a weight's (no input)."""
    single = (_Fixed1q, _Rotation)
    lead = 0
    while lead < len(ops) and isinstance(ops[lead], single):
        lead += 1
    start = _ProductState(ops[:lead], num_qubits) if lead else None

    def constant_in_batch(op) -> bool:
        return not isinstance(op, _Rotation) or weight_only[op.index]

    fused, run = [], []
    for op in [*ops[lead:], None]:  # None: the end, flushes the last run
        if op is not None and constant_in_batch(op):
            run.append(op)
            continue
        if len(run) > 1:
            stages: list = []
            for gate in run:
                if isinstance(gate, single) and stages and isinstance(stages[-1], list):
                    stages[-1].append(gate)
                else:
                    stages.append([gate] if isinstance(gate, single) else gate)
            stages = [_QubitMatrices(s, num_qubits) if isinstance(s, list) else s for s in stages]
            fused.append(_Unitary(stages))
        else:
            fused += run
        run = []
        if op is not None:
            fused.append(op)
    return start, fused


class _Builder:
    """Walks a circuit once and emits the operations and the angle table."""

    def __init__(self, circuit: QuantumCircuit, inputs: list, weights: list):
        self.num_qubits = circuit.num_qubits
        self.columns: list[int] = []
        self.slopes: list[float] = []
        self.offsets: list[float] = []
        self.ops: list[Any] = []
        self._params = parameter_columns(inputs, weights)
        self._index = np.arange(2**self.num_qubits, dtype=np.int64)
        # Constant monomial gates not yet emitted: they are fused until a gate touching one
        # of their qubits arrives; other gates commute with them and are emitted first.
        self._perm: np.ndarray | None = None
        self._phase: np.ndarray | None = None
        self._pending: set[int] = set()
        for instruction in circuit.data:
            operation = instruction.operation
            qubits = [circuit.find_bit(q).index for q in instruction.qubits]
            if operation.name not in _SKIPPED:
                self._add(operation.name, qubits, list(operation.params))
        self._flush()

    def _add(self, name: str, qubits: list[int], params: list) -> None:
        if name in _FIXED_MONOMIAL:
            self._monomial(*self._fixed(name, qubits), qubits)
        elif name == "h":
            self._emit(_Fixed1q(qubits[0], np.array([[1, 1], [1, -1]]) / math.sqrt(2)), qubits)
        elif name in _ROTATIONS:
            column, slope, offset = self._angle(name, qubits, params[0])
            if column is None:
                self._fixed_rotation(name, qubits[0], offset)
            else:
                # Store the angle each formula uses: θ/2 for rx, ry, rz and θ for p.
                scale = 1.0 if name == "p" else 0.5
                self.columns.append(column)
                self.slopes.append(scale * slope)
                self.offsets.append(scale * offset)
                self._emit(_Rotation(name, qubits[0], len(self.columns) - 1), qubits)
        else:
            raise ValueError(
                f"statevector backend: unsupported gate '{name}' on qubits {qubits}; "
                f"supported: {', '.join(SUPPORTED_GATES)} (and measure, barrier)"
            )

    def _fixed(self, name: str, q: list[int]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(perm, phase) of a constant monomial gate, with new[k] = phase[k] * old[perm[k]]."""
        k = self._index
        bit = [(k >> qubit) & 1 for qubit in q]
        flip = [1 << qubit for qubit in q]
        if name == "id":
            return None, None
        if name == "x":
            return k ^ flip[0], None
        if name == "y":
            # Y = i·[[0, -1], [1, 0]]; the global phase i does not change probabilities and
            # leaving it out keeps Y real.
            return k ^ flip[0], np.where(bit[0] == 1, 1.0, -1.0)
        if name == "z":
            return None, np.where(bit[0] == 1, -1.0, 1.0)
        if name in ("s", "sdg", "t"):
            angle = {"s": math.pi / 2, "sdg": -math.pi / 2, "t": math.pi / 4}[name]
            return None, np.where(bit[0] == 1, cmath.exp(1j * angle), 1.0)
        if name == "cx":
            return np.where(bit[0] == 1, k ^ flip[1], k), None
        if name == "cz":
            return None, np.where((bit[0] & bit[1]) == 1, -1.0, 1.0)
        if name == "swap":
            differ = bit[0] ^ bit[1]
            return k ^ (differ * (flip[0] | flip[1])), None
        # ccx
        return np.where((bit[0] & bit[1]) == 1, k ^ flip[2], k), None

    def _fixed_rotation(self, name: str, qubit: int, angle: float) -> None:
        c, s = math.cos(angle / 2), math.sin(angle / 2)
        bit = (self._index >> qubit) & 1
        if name == "rx":
            self._emit(_Fixed1q(qubit, np.array([[c, -1j * s], [-1j * s, c]])), [qubit])
        elif name == "ry":
            self._emit(_Fixed1q(qubit, np.array([[c, -s], [s, c]])), [qubit])
        elif name == "rz":
            self._monomial(None, np.where(bit == 1, complex(c, s), complex(c, -s)), [qubit])
        else:  # p
            self._monomial(None, np.where(bit == 1, cmath.exp(1j * angle), 1.0), [qubit])

    def _angle(self, gate: str, qubits: list[int], value: Any) -> tuple[int | None, float, float]:
        """(column, slope, offset) of a gate angle slope * values[column] + offset."""
        return linear_angle(
            value, self._params, f"statevector backend: gate '{gate}' on qubits {qubits}"
        )

    def _monomial(self, perm: np.ndarray | None, phase: np.ndarray | None, qubits) -> None:
        # Applying (p1, f1) then (p2, f2): new[k] = f2[k] f1[p2[k]] old[p1[p2[k]]].
        if perm is not None:
            if self._phase is not None:
                self._phase = self._phase[perm]
            self._perm = perm if self._perm is None else self._perm[perm]
        if phase is not None:
            self._phase = phase if self._phase is None else self._phase * phase
        self._pending.update(qubits)

    def _emit(self, op: Any, qubits: list[int]) -> None:
        if self._pending.intersection(qubits):
            self._flush()
        last = self.ops[-1] if self.ops else None
        if isinstance(op, _Fixed1q) and isinstance(last, _Fixed1q) and last.qubit == op.qubit:
            # Consecutive constant gates on one qubit become one 2x2 matrix.
            self.ops[-1] = _Fixed1q(op.qubit, op.matrix @ last.matrix)
        else:
            self.ops.append(op)

    def _flush(self) -> None:
        perm, phase = self._perm, self._phase
        self._perm, self._phase, self._pending = None, None, set()
        if perm is not None and np.array_equal(perm, self._index):
            perm = None
        if phase is not None:
            # A global phase does not change probabilities; without it, phases such as
            # S·S = Z or rz(π) are real and keep the circuit in a real dtype.
            phase = phase / phase[0]
            if np.iscomplexobj(phase) and np.abs(phase.imag).max() < _IMAG_TOL:
                phase = phase.real.copy()
            if np.allclose(phase, 1.0, rtol=0.0, atol=_IMAG_TOL):
                phase = None
        if perm is not None or phase is not None:
            self.ops.append(_Monomial(perm, phase))
