"""Training the seeds of an arm together: one stacked model, one forward and backward pass
and one optimizer step for all of them (torch.func: `stack_module_state`, then the models'
own stacked forward where they have one, `stacked_call`, else `vmap`).

Each model keeps its own data split, batch order, initialisation, selection on its own
validation and its own result, as `fit` would give it alone; only the arithmetic is shared.
Adam is elementwise, so one Adam over the stacked weights is each model's own Adam; each
model's dropout masks are drawn from its own generator, in the order and shapes `fit` draws
them. Where a step is mostly Python and dispatch (batch 1, linear fronts, small circuits), S
models cost little more than one.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from kdbench.api import Distiller
from kdbench.distill import EpochMetrics, FitResult, Split, adam, batch_count, tally
from kdbench.errors import first_line
from kdbench.losses import training_loss
from kdbench.quantum.counters import CircuitCounters


class NotStackable(Exception):
    """The models cannot be batched (an operation vmap does not support, in the student or
    the distiller); found on the first step, before any weight or counter moved. A
    student's `forward_stacked` raises it where it has no stacked form (then vmap runs it)."""


LogProbs = Callable[[nn.Module, torch.Tensor], torch.Tensor]
Params = Mapping[str, torch.Tensor]


def stacked_call(module: nn.Module, params: Params, x: torch.Tensor) -> torch.Tensor:
    """`module` as S models at once: `params` are its parameters by name (as
    `named_parameters` gives them, relative to it), each with a leading dimension S, one per
    model; `x` [S, B, ...] holds model s's inputs at `x[s]`. Returns [S, B, ...], what each
    model's forward gives. Its own buffers serve every model.

    A module that defines `forward_stacked(params, x)` is called so; nn.Sequential,
    nn.Linear and modules without parameters need none (the last run on all S·B rows at
    once: they must treat rows apart, as nn.Flatten, activations and pooling do). Raises
    NotStackable for any other: its seeds are then vmapped. One batched
    product per layer replaces vmap's per-operation batching: where a step is mostly
    dispatch (linear fronts, small circuits), it is what S models cost beyond one.
    """
    own = getattr(module, "forward_stacked", None)
    if own is not None:
        return own(params, x)
    if type(module) is nn.Sequential:  # a subclass may have a forward of its own
        for name, layer in module.named_children():
            x = stacked_call(layer, params_of(params, name), x)
        return x
    if type(module) is nn.Linear:
        # W [S, out, in] times the rows as columns, [S, in, B·...]: its gradient is then a
        # product of contiguous operands (2-3x faster on the CPU than x times W transposed).
        weight, bias, rows = params["weight"], params.get("bias"), x.flatten(1, -2).transpose(1, 2)
        if bias is None:
            out = torch.bmm(weight, rows)
        else:
            out = torch.baddbmm(bias[:, :, None], weight, rows)
        return out.transpose(1, 2).unflatten(1, x.shape[1:-1])
    if next(module.parameters(), None) is None:
        return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])
    raise NotStackable(f"{type(module).__name__} has no stacked form (forward_stacked)")


def params_of(params: Params, name: str) -> dict[str, torch.Tensor]:
    """The parameters of the submodule `name`, named relative to it."""
    prefix = f"{name}."
    return {
        key.removeprefix(prefix): value for key, value in params.items() if key.startswith(prefix)
    }


def fit_stacked(
    models: Sequence[nn.Module],
    log_probs: LogProbs,
    trains: Sequence[Split],
    vals: Sequence[Split],
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float | Sequence[float],
    seeds: Sequence[int],
    rng_states: Sequence[torch.Tensor],
    distiller: Distiller | None = None,
    on_epoch: Callable[[int, EpochMetrics], None] | None = None,
    schedule: str = "constant",
    tests: Sequence[Split] | None = None,
    checkpoints: Collection[int] = (),
    on_checkpoint: Callable[[int, int, FitResult], None] | None = None,
    native: bool = True,
) -> list[FitResult | FloatingPointError]:
    """`fit` for models of one architecture (model i on `trains[i]`, `vals[i]`, its batches
    drawn with `seeds[i]`, its dropout from the global RNG state `rng_states[i]`, as `fit`
    would have found it), trained as one. Returns each model's result, or the error that
    stopped it (its loss became infinite or NaN: the others go on); each model ends with its
    kept weights loaded and its circuits' counters as `fit` leaves them. Callbacks get the
    model's index first. `lr` is every model's, or one per model (the points of a swept
    learning rate). Results agree with `fit`'s to float tolerance (batched products may round
    differently). `native=False` vmaps even a student that has a stacked forward
    (`stacked_call`), as perf/stacked.py does to compare the two.
    """
    count = len(models)
    params, buffers = stack_module_state(list(models))  # copies: [S, ...] leaves
    base = copy.deepcopy(models[0])  # the architecture; its own weights are never used
    dropouts = _drawn_dropouts(base)
    _probe_shapes(base, dropouts, trains[0].x)
    circuits = [_counters(model) for model in models]
    trained_on = _counters(base)  # counts the training calls of one model, or of S natively
    counted = [c.executions for c in trained_on]
    generators = [torch.Generator().set_state(state) for state in rng_states]
    native = native and not dropouts and _stacks_natively(base, params, buffers, trains)

    def scored(out, y, t):
        total, parts = training_loss(out, y, t, distiller)
        return total, parts, (out.argmax(1) == y).sum()

    def model_loss(p, b, x, y, t):
        return scored(log_probs(_with(base, p, b), x), y, t)

    teacher = trains[0].teacher_logits is not None
    per_model = (0, 0, 0 if teacher else None)
    # Natively, only the loss is vmapped: a distiller's terms are per model (batch means).
    losses = vmap(scored, in_dims=per_model, randomness="different")
    vmapped = vmap(model_loss, in_dims=(0, 0, *per_model), randomness="different")

    def batched(p, b, x, y, t):
        with _quiet():
            if native:
                return losses(log_probs(_stacked(base, p), x), y, t)
            return vmapped(p, b, x, y, t)

    lrs = [float(lr)] * count if isinstance(lr, (int, float)) else [float(r) for r in lr]
    # Adam's step and one-cycle's schedule are linear in the learning rate: models with
    # different rates step at rate 1, each step scaled to its model's rate (`_scaled`).
    shared = lrs[0] if len(set(lrs)) == 1 else None
    optimizer = adam(params.values(), 1.0 if shared is None else shared)
    rates = torch.tensor(lrs)
    scales = [rates.view(-1, *[1] * (w.dim() - 1)).to(w) for w in params.values()]
    orders = [torch.Generator().manual_seed(seed) for seed in seeds]
    samples = len(trains[0].y)
    steps = batch_count(samples, batch_size)
    scheduler = None
    if schedule == "one-cycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, optimizer.defaults["lr"], total_steps=epochs * steps, pct_start=0.25
        )
    # The seeds' splits side by side, [S, samples, ...], so that a step gathers all its
    # batches in one indexing (seed i's rows from seed i's split).
    xs, ys = torch.stack([s.x for s in trains]), torch.stack([s.y for s in trains])
    ts = torch.stack([s.teacher_logits for s in trains]) if teacher else None  # type: ignore[misc]
    rows = torch.arange(count).unsqueeze(1)
    results: list[FitResult | FloatingPointError] = [FitResult() for _ in models]
    alive = torch.ones(count, dtype=torch.bool)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        base.train()
        # Every seed's batch order for the epoch, [S, samples]: step j takes columns of it.
        orders_now = torch.stack([torch.randperm(samples, generator=o) for o in orders])
        sums: torch.Tensor | None = None  # [S, loss + parts + correct], float64
        names: list[str] = []
        for step in range(steps):
            picks = orders_now[:, step * batch_size : (step + 1) * batch_size]
            x, y = xs[rows, picks], ys[rows, picks]
            t = ts[rows, picks] if ts is not None else None
            masks = _masks(dropouts, x.shape[1:], generators)
            try:
                total, parts, correct = batched(params, buffers | masks, x, y, t)
            except RuntimeError as exc:
                if epoch == 1 and step == 0 and "vmap" in str(exc):  # nothing trained yet
                    raise NotStackable(first_line(exc)) from exc
                raise
            finite = torch.isfinite(total.detach())
            for i in (alive & ~finite).nonzero().flatten().tolist():
                results[i] = FloatingPointError(
                    f"the training loss became {total[i].item()} in epoch {epoch}"
                )
            alive &= finite
            if not alive.any():
                return results
            optimizer.zero_grad(set_to_none=True)
            # Summed, each model's loss gives its own weights their gradient; a stopped
            # model's gives none.
            torch.where(alive, total, 0.0).sum().backward()
            if shared is None:
                _scaled(optimizer, list(params.values()), scales)
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            names = ["loss", *parts]
            # As `fit` sums them: each batch's float32 terms times its size, in float64.
            terms = torch.stack([total, *parts.values()], 1).detach().double()
            batch = len(picks[0])
            row = torch.cat([batch * terms, correct.double().unsqueeze(1)], 1)
            sums = row if sums is None else sums + row
        on_val = _outputs(base, params, buffers, log_probs, vals, native)
        on_test = (
            None if tests is None else _outputs(base, params, buffers, log_probs, tests, native)
        )
        seconds = (time.perf_counter() - started) / count
        for i, model in enumerate(models):
            result = results[i]
            if not alive[i] or isinstance(result, FloatingPointError):
                continue
            _load(model, params, buffers, i)
            v = tally(on_val[i], vals[i], num_classes, distiller)
            tested = None if on_test is None else tally(on_test[i], tests[i], num_classes)
            assert sums is not None
            means = dict(zip([*names, "accuracy"], (sums[i] / samples).tolist(), strict=True))
            metrics = EpochMetrics(
                epoch, means, v.metrics(), seconds, {} if tested is None else tested.metrics()
            )
            result.close_epoch(metrics, v, tested, model)
            if on_epoch is not None:
                on_epoch(i, metrics)
            if on_checkpoint is not None and epoch in checkpoints:
                on_checkpoint(i, epoch, result)
    del optimizer, scheduler
    for model, result, own in zip(models, results, circuits, strict=True):
        for mine, shared, before in zip(own, trained_on, counted, strict=True):
            mine.count((shared.executions - before) // (count if native else 1))
        if isinstance(result, FitResult):
            model.load_state_dict(result.best_state)
    return results


@torch.no_grad()
def _scaled(
    optimizer: torch.optim.Optimizer,
    weights: Sequence[torch.Tensor],
    scales: Sequence[torch.Tensor],
) -> None:
    """One step of `optimizer` (at rate 1) over the stacked `weights`, each step multiplied by
    its `scales` (model i's learning rate along the leading dimension)."""
    before = [w.clone() for w in weights]
    optimizer.step()
    for weight, old, scale in zip(weights, before, scales, strict=True):
        weight.sub_(old).mul_(scale).add_(old)


def _with(base: nn.Module, params: dict, buffers: dict) -> nn.Module:
    """`base` computing with these weights and buffers (one model's, under vmap)."""
    return lambda inputs: functional_call(base, (params, buffers), (inputs,))  # type: ignore[return-value]


def _stacked(base: nn.Module, params: Params) -> nn.Module:
    """`base` as the S models whose weights are `params` (`stacked_call`)."""
    return lambda inputs: stacked_call(base, params, inputs)  # type: ignore[return-value]


def _stacks_natively(
    base: nn.Module, params: Params, buffers: Params, trains: Sequence[Split]
) -> bool:
    """Whether `base` runs as S models in `stacked_call` (tried on one input of each model,
    its circuits' counters left as they were). Only a student module that defines
    `forward_stacked` does; its buffers, which serve every model there, must be the same in
    all of them."""
    if not hasattr(base, "forward_stacked"):
        return False
    if any(not bool((b == b[:1]).all()) for b in buffers.values()):
        return False
    circuits = _counters(base)
    before = [(c.executions, c.shots) for c in circuits]
    try:
        with torch.no_grad(), _quiet():
            stacked_call(base, params, torch.stack([split.x[:1] for split in trains]))
    except NotStackable:
        return False
    finally:
        for circuit, (executions, shots) in zip(circuits, before, strict=True):
            circuit.executions, circuit.shots = executions, shots
    return True


@contextmanager
def _quiet() -> Iterator[None]:
    """Without torch's warning that an operation has no batching rule (kl_div, say): it then
    runs model by model, slower for that operation but exact, and a user can do nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "There is a performance drop because we have")
        yield


def _outputs(
    base: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    log_probs: LogProbs,
    splits: Sequence[Split],
    native: bool,
    batch_size: int = 512,
) -> list[list[torch.Tensor]]:
    """Each model's log-probabilities on its split, in batches of `batch_size` (as
    `evaluate` takes them): one batched forward pass, in evaluation mode, per batch."""

    def forward(p, b, x):
        return log_probs(_with(base, p, b), x)

    vmapped = vmap(forward)

    def batched(p, b, x):
        return log_probs(_stacked(base, p), x) if native else vmapped(p, b, x)

    base.eval()
    chunks = []
    with torch.no_grad(), _quiet():
        for start in range(0, len(splits[0].y), batch_size):
            x = torch.stack([split.x[start : start + batch_size] for split in splits])
            chunks.append(batched(params, buffers, x))
    return [[chunk[i] for chunk in chunks] for i in range(len(splits))]


class _DrawnDropout(nn.Module):
    """Dropout whose mask (already scaled by 1/(1-p)) is a buffer set before each step."""

    def __init__(self, p: float, features: bool):
        super().__init__()
        self.p, self.features = p, features
        self.register_buffer("mask", torch.ones(()), persistent=False)
        self.input_shape: tuple[int, ...] = ()  # one input's, seen by the shape probe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training else x


def _drawn_dropouts(model: nn.Module) -> dict[str, _DrawnDropout]:
    """Replace `model`'s dropout layers by drawn ones; by mask buffer name, in the order
    they are registered (the order an nn.Sequential calls them)."""
    found = {}
    for name, module in list(model.named_modules()):
        for child_name, child in module.named_children():
            if type(child) in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d):
                drawn = _DrawnDropout(child.p, type(child) is not nn.Dropout)
                setattr(module, child_name, drawn)
                found[f"{name}.{child_name}.mask".lstrip(".")] = drawn
    return found


def _masks(
    dropouts: dict[str, _DrawnDropout], shape: torch.Size, generators: list[torch.Generator]
) -> dict[str, torch.Tensor]:
    """Each model's masks for one step of inputs of `shape` ([B, ...]), drawn from its
    generator as torch's CPU dropout draws them: layer by layer, Bernoulli(1 - p) noise of
    the input's shape (of [B, C, 1, ...] for a feature dropout), divided by 1 - p."""
    masks: dict[str, list[torch.Tensor]] = {name: [] for name in dropouts}
    batch = shape[0]
    for generator in generators:
        for name, layer in dropouts.items():
            kept = 1 - layer.p
            size = layer.input_shape
            if layer.features:
                size = (size[0],) + (1,) * (len(size) - 1)
            if layer.p == 0:
                noise = torch.ones(batch, *size)
            elif layer.p == 1:
                noise = torch.zeros(batch, *size)
            else:
                noise = torch.empty(batch, *size).bernoulli_(kept, generator=generator)
                noise.div_(kept)
            masks[name].append(noise)
    return {name: torch.stack(noise) for name, noise in masks.items()}


def _probe_shapes(model: nn.Module, dropouts: dict[str, _DrawnDropout], x: torch.Tensor) -> None:
    """Record the input shape of each drawn dropout from one input through `model`."""
    if not dropouts:
        return
    hooks = [layer.register_forward_pre_hook(_record_shape) for layer in dropouts.values()]
    try:
        with torch.no_grad():
            model.eval()(x[:1])
    finally:
        for hook in hooks:
            hook.remove()


def _record_shape(layer: _DrawnDropout, inputs: tuple[torch.Tensor, ...]) -> None:
    layer.input_shape = tuple(inputs[0].shape[1:])


def _counters(model: nn.Module) -> list[CircuitCounters]:
    """The compiled circuits a model holds, in a fixed order."""
    return [
        value
        for module in model.modules()
        for value in vars(module).values()
        if isinstance(value, CircuitCounters)
    ]


def _load(
    model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], i: int
) -> None:
    """Model `i`'s current weights and buffers, from the stack into `model`."""
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            tensor.copy_((params if name in params else buffers)[name][i])
