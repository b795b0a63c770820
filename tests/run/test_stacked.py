"""Stacked training: the seeds of an arm trained as one batched model give each cell what it
gets trained alone (loss curves, selection, test accuracy, circuit counts) to float
tolerance, on every built-in student kind and both torch backends; each cell stays its own
run with its own id; a seed whose loss diverges fails alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from kdbench import paths
from kdbench.api import StudentContext
from kdbench.config import load_spec
from kdbench.data import make_splits
from kdbench.distill import Split, evaluate, fit
from kdbench.errors import ConfigError
from kdbench.matrix import expand
from kdbench.run.stacking import stacks, tasks
from kdbench.run.training import _log_probs
from kdbench.stacked import NotStackable, _counters, _stacks_natively, fit_stacked, stacked_call
from kdbench.testing import make, plugin_registry, run_config
from tests.helpers import TINY

SEEDS = (0, 1, 2)
REGISTRY = plugin_registry()


def splits(seed: int) -> tuple[Split, Split]:
    """Real MNIST 0-2, a few images per class, drawn with `seed`."""
    dataset = make(
        REGISTRY,
        "datasets",
        "mnist",
        classes=[0, 1, 2],
        train_per_class=10,
        val_per_class=6,
        test_per_class=6,
    )
    drawn = make_splits(dataset, paths.data_dir(None), seed)
    return Split(drawn.train_x, drawn.train_y), Split(drawn.val_x, drawn.val_y)


def build(student: str, backend: str, seed: int, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    component = make(REGISTRY, "students", student, **options)
    encoder = make(REGISTRY, "encoders", component.encoder) if component.encoder else None
    context = StudentContext(3, (1, 28, 28), make(REGISTRY, "backends", backend), encoder, seed)
    return component.build(context)


def built(student: str, backend: str, **options) -> tuple[list, list[torch.Tensor]]:
    """A model per seed of SEEDS, and the RNG state each leaves (its dropout draws from it,
    as it would trained alone)."""
    models, states = [], []
    for seed in SEEDS:
        models.append(build(student, backend, seed, **options))
        states.append(torch.get_rng_state())
    return models, states


STUDENTS = [
    ("released-q3", {}),
    ("vqc-q3", {}),
    ("twin-q3", {}),
    ("pqc", {"front": "cnn"}),
    ("pqc", {"front": "linear"}),
    ("pqc", {"front": "pool"}),
]


@pytest.mark.parametrize("backend", ["statevector", "density-matrix"])
@pytest.mark.parametrize(
    ("student", "options"),
    STUDENTS,
    ids=["released", "vqc", "twin", "pqc-cnn", "pqc-linear", "pqc-pool"],
)
def test_stacked_seeds_train_as_each_would_alone(student, options, backend):
    data = [splits(seed) for seed in SEEDS]
    common = {"num_classes": 3, "epochs": 3, "batch_size": 4, "lr": 0.01}
    alone = []
    for seed, (train, val) in zip(SEEDS, data, strict=True):
        model = build(student, backend, seed, **options)
        fitted = fit(model, _log_probs, train, val, seed=seed, **common)
        alone.append((fitted, [c.executions for c in _counters(model)], model))
    models, states = built(student, backend, **options)
    # Linear and pooling fronts run as S models natively (one circuit call for all, on the
    # statevector backend); a CNN front, or a circuit on the density-matrix backend, vmapped.
    cnn = student == "released-q3" or options.get("front") == "cnn"
    native = not cnn and (student == "twin-q3" or backend == "statevector")
    params, buffers = stack_module_state(models)
    assert _stacks_natively(models[0], params, buffers, [t for t, _ in data]) == native
    stacked = fit_stacked(
        models,
        _log_probs,
        [t for t, _ in data],
        [v for _, v in data],
        seeds=SEEDS,
        rng_states=states,
        **common,
    )
    for (one, executions, solo), together, model, (_, val) in zip(
        alone, stacked, models, data, strict=True
    ):
        assert not isinstance(together, Exception)
        # Batched products round differently, and Adam turns a gradient that is ~0 into a
        # step of ~lr whose sign the rounding decides: losses agree to 1e-3 over 3 epochs,
        # and an image the model scores as a near tie may land on either side (CI once saw
        # 10 of 30 training images right alone, 9 stacked): accuracies agree to one image.
        one_image = 1 / len(data[0][0].y) + 1e-9
        for a, b in zip(one.history, together.history, strict=True):
            assert a.train["loss"] == pytest.approx(b.train["loss"], rel=1e-3)
            assert a.val["loss"] == pytest.approx(b.val["loss"], rel=1e-3)
            assert abs(a.train["accuracy"] - b.train["accuracy"]) <= one_image
            assert abs(a.val_accuracy - b.val_accuracy) <= 1 / len(val.y) + 1e-9
        assert one.best_epoch == together.best_epoch
        assert [c.executions for c in _counters(model)] == executions
        # The kept weights are loaded: they classify validation as the solo model's do (the
        # weights themselves differ as much as a solo run on 1 or 2 threads: up to ~0.02).
        kept = evaluate(model, _log_probs, val, 3).accuracy
        assert abs(kept - evaluate(solo, _log_probs, val, 3).accuracy) <= 1 / len(val.y) + 1e-9


@pytest.mark.parametrize("schedule", ["constant", "one-cycle"])
def test_stacked_learning_rates_train_as_each_would_alone(schedule):
    """Points of a swept learning rate stack too: each model's Adam step is scaled to its rate."""
    data = [splits(seed) for seed in SEEDS]
    rates = [0.01, 0.003, 0.03]
    common = {"num_classes": 3, "epochs": 3, "batch_size": 4, "schedule": schedule}
    alone = [
        fit(build("vqc-q3", "statevector", seed), _log_probs, t, v, seed=seed, lr=lr, **common)
        for seed, (t, v), lr in zip(SEEDS, data, rates, strict=True)
    ]
    models, states = built("vqc-q3", "statevector")
    stacked = fit_stacked(
        models,
        _log_probs,
        [t for t, _ in data],
        [v for _, v in data],
        lr=rates,
        seeds=SEEDS,
        rng_states=states,
        **common,
    )
    for one, together in zip(alone, stacked, strict=True):
        assert not isinstance(together, Exception)
        for a, b in zip(one.history, together.history, strict=True):
            assert a.train["loss"] == pytest.approx(b.train["loss"], rel=1e-3)
            assert a.val["loss"] == pytest.approx(b.val["loss"], rel=1e-3)
        assert one.best_epoch == together.best_epoch
    # Different rates train differently: the test above could not pass on one shared rate.
    assert len({round(r.history[-1].train["loss"], 4) for r in alone}) == 3


def test_a_diverging_seed_fails_alone():
    data = [splits(seed) for seed in SEEDS]
    broken = Split(data[1][0].x.clone(), data[1][0].y)
    broken.x[3] = math.nan  # seed 1's loss becomes NaN at the batch holding image 3
    trains = [data[0][0], broken, data[2][0]]
    models, states = built("vqc-q3", "statevector")
    results = fit_stacked(
        models,
        _log_probs,
        trains,
        [v for _, v in data],
        num_classes=3,
        epochs=2,
        batch_size=4,
        lr=0.01,
        seeds=SEEDS,
        rng_states=states,
    )
    assert isinstance(results[1], FloatingPointError)
    assert "the training loss became nan in epoch 1" in str(results[1])
    for i in (0, 2):
        model = build("vqc-q3", "statevector", SEEDS[i])
        alone = fit(
            model,
            _log_probs,
            trains[i],
            data[i][1],
            num_classes=3,
            epochs=2,
            batch_size=4,
            lr=0.01,
            seed=SEEDS[i],
        )
        assert [m.val_accuracy for m in alone.history] == [
            m.val_accuracy for m in results[i].history
        ]


def cells_of(text: str, write_config, registry):
    return expand(load_spec(write_config(text), registry))


def test_which_cells_stack_and_how_they_are_grouped(write_config, registry):
    text = TINY.format(name="grouping").replace("seeds = [0]", "seeds = [0, 1, 2, 3]")
    cells = cells_of(text, write_config, registry)  # linear front: stacking pays
    assert all(stacks(cell) for cell in cells)
    grouped = tasks(cells)
    assert [len(task) for task in grouped] == [4, 4]  # untaught, taught
    assert all(len({c.seed for c in task}) == len(task) for task in grouped)
    # Taught cells stack whatever their teacher (its outputs are each model's data), apart
    # from the untaught ones (another loss).
    two = text.replace('teachers = ["none", "lenet"]', 'teachers = ["none", "lenet", "other"]')
    two += (
        '\n[teachers.other]\nplugin = "lenet"\nepochs = 1\ntrain_per_class = 60\nshuffled = true\n'
    )
    both = tasks(cells_of(two, write_config, registry))
    assert [len(task) for task in both] == [4, 8]
    assert {c.teacher.name for c in both[1]} == {"lenet", "other"}
    assert len({len(task) for task in tasks(cells, workers=4)}) == 1  # split for 4 workers
    assert len(tasks(cells, workers=4)) == 4
    shots = text.replace('backends = ["statevector"]', 'backends = ["sampled"]') + (
        '\n[backends.sampled]\nplugin = "statevector"\nshots = 100\n'
    )
    assert not any(stacks(c) for c in cells_of(shots, write_config, registry))
    off = text.replace("[train]\n", '[train]\nstacked = "off"\n')
    assert [len(t) for t in tasks(cells_of(off, write_config, registry))] == [1] * 8
    # auto leaves a convolutional front at batch 32 alone (slower stacked); on stacks it.
    cnn = text.replace('front = "linear"', 'front = "cnn"').replace(
        "batch_size = 16", "batch_size = 32"
    )
    assert not any(stacks(c) for c in cells_of(cnn, write_config, registry))
    on = cnn.replace("[train]\n", '[train]\nstacked = "on"\n')
    assert all(stacks(c) for c in cells_of(on, write_config, registry))
    # A swept learning rate stacks with the seeds: one task per arm still.
    swept = text.replace("[[matrix]]\n", '[[matrix]]\nsweep = {"train.lr" = [0.01, 0.02]}\n')
    assert [len(t) for t in tasks(cells_of(swept, write_config, registry))] == [8, 8]
    # The mode is never part of a cell's id.
    assert {c.id for c in cells_of(off, write_config, registry)} == {c.id for c in cells}


def test_bad_stacked_value_is_one_line(write_config, registry):
    text = TINY.format(name="bad").replace("[train]\n", '[train]\nstacked = "yes"\n')
    with pytest.raises(ConfigError, match="stacked"):
        load_spec(write_config(text), registry)


@pytest.mark.slow
def test_stacked_cells_are_the_cells_trained_alone(isolated):
    """Each stacked cell is its own FINISHED run with the id, metrics per epoch and test
    accuracy it has trained alone; a second run finds them all done."""
    text = TINY.format(name="stacked").replace("seeds = [0]", "seeds = [0, 1, 2]")
    runs = {}
    for mode in ("on", "off"):
        config = isolated / f"{mode}.toml"
        config.write_text(text.replace("[train]\n", f'[train]\nstacked = "{mode}"\n'))
        ran = run_config(config, REGISTRY, store=isolated / mode)
        assert ran.finished and len(ran.outcomes) == 6, ran.errors
        runs[mode] = {r.data.tags["kdbench.cell_id"]: r for r in ran.runs()}
        assert len(runs[mode]) == 6
        again = run_config(config, REGISTRY, store=isolated / mode)
        assert {o.status for o in again.outcomes} == {"SKIPPED"}
    assert runs["on"].keys() == runs["off"].keys()
    for cell_id, run in runs["on"].items():
        alone = runs["off"][cell_id]
        assert run.data.tags["kdbench.stacked"] == "3" and "kdbench.stacked" not in alone.data.tags
        for name in ("test_accuracy", "best_val_accuracy", "best_epoch", "circuit_executions"):
            assert run.data.metrics[name] == alone.data.metrics[name], name
        assert run.data.metrics["test_loss"] == pytest.approx(
            alone.data.metrics["test_loss"], rel=1e-4
        )
        assert "val_accuracy" in run.data.metrics  # its epochs, logged in its own run


@pytest.mark.slow
def test_a_distiller_vmap_cannot_batch_trains_its_seeds_one_at_a_time(isolated):
    """DKD picks the target class with a boolean mask, which vmap refuses: found on the
    first step, the group trains one seed at a time and gives what stacked = "off" gives."""
    text = TINY.format(name="dkd").replace("seeds = [0]", "seeds = [0, 1]")
    text = text.replace('students = ["q2"]', 'students = ["q2"]\ndistillers = ["dkd"]')
    results = {}
    for mode in ("auto", "off"):
        config = isolated / f"{mode}.toml"
        config.write_text(text.replace("[train]\n", f'[train]\nstacked = "{mode}"\n'))
        ran = run_config(config, REGISTRY, store=isolated / mode)
        assert ran.finished, ran.errors
        results[mode] = {r.data.tags["kdbench.cell_id"]: r for r in ran.runs()}
    taught = [r for r in results["auto"].values() if r.data.tags["kdbench.teacher"] == "lenet"]
    assert len(taught) == 2
    for run in taught:
        assert run.data.tags["kdbench.stacked"].startswith("1 (not stackable: vmap")
        alone = results["off"][run.data.tags["kdbench.cell_id"]]
        assert run.data.metrics["test_loss"] == alone.data.metrics["test_loss"]  # the same path


@pytest.mark.parametrize(
    ("student", "options"),
    [
        ("pqc", {"front": "linear", "readout": "z-linear"}),
        ("pqc", {"front": "pool", "readout": "parity"}),
        ("classical", {"front": "linear"}),
        ("classical", {"front": "pool", "head": "ising-ring", "readout": "mod-c"}),
    ],
    ids=["pqc-z-linear", "pqc-pool-parity", "classical-linear", "classical-ising"],
)
def test_a_stacked_forward_gives_each_model_its_own_outputs_and_gradients(student, options):
    models, _ = built(student, "statevector", **options)
    params, _ = stack_module_state(models)
    x = torch.stack([splits(seed)[0].x[:5] for seed in SEEDS])
    coeffs = torch.randn(len(SEEDS), 5, 3, generator=torch.Generator().manual_seed(0))
    (stacked_call(models[0], params, x) * coeffs).sum().backward()
    for i, model in enumerate(models):
        out = model(x[i])
        (out * coeffs[i]).sum().backward()
        with torch.no_grad():
            assert torch.allclose(stacked_call(models[0], params, x)[i], out, atol=1e-6)
        for name, weight in model.named_parameters():
            assert torch.allclose(params[name].grad[i], weight.grad, atol=1e-5), name


def test_stacked_call_runs_layers_it_knows_and_refuses_the_others():
    torch.manual_seed(0)
    layers = [
        torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.Tanh()) for _ in SEEDS
    ]
    params, _ = stack_module_state(layers)
    x = torch.randn(len(SEEDS), 2, 5, 4)  # extra axes before the features, as nn.Linear takes
    out = stacked_call(layers[0], params, x)
    for i, layer in enumerate(layers):
        assert torch.allclose(out[i], layer(x[i]), atol=1e-6)
    convs = [nn.Conv2d(1, 2, 3) for _ in SEEDS]
    with pytest.raises(NotStackable, match="Conv2d has no stacked form"):
        stacked_call(convs[0], stack_module_state(convs)[0], torch.zeros(len(SEEDS), 1, 1, 5, 5))
