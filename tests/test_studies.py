"""The study configs behind RESULTS.md (studies/): they validate, expand to the cells their
comments describe, and share the paper profile's teachers."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from kdbench.config import load_spec
from kdbench.matrix import expand
from kdbench.teachers import cache_key, networks_to_train
from tests.helpers import ROOT


def test_the_verdict_crosses_every_student_with_every_teacher(registry):
    spec = load_spec(ROOT / "studies" / "verdict.toml", registry)
    cells = expand(spec)
    assert len(cells) == 1320 and len(spec.experiment.seeds) == 10 and spec.train.threads == 1
    students = Counter(c.student.name for c in cells)
    # released/vqc/twin: 7 teachers (with "none") on the 0-5 and 0-7 sets (4), 4-qubit ones
    # on the 0-7 sets only; the classical controls alone.
    assert students["released-q3"] == students["vqc-q3"] == students["twin-q3"] == 4 * 7 * 10
    assert students["released-q4"] == students["vqc-q4"] == students["twin-q4"] == 2 * 7 * 10
    assert students["classical-q3"] == 4 * 10 and students["classical-q4"] == 2 * 10

    def keys(cell):
        return tuple(
            k for _, k in networks_to_train(cell.teacher, cell.dataset, cell.seed, members)
        )

    def members(name):
        return spec.instance("teachers", name)

    for teacher, instances in (("lenet", 10), ("lenet-0", 1)):  # one per seed, or one
        taught = [c for c in cells if c.teacher_name == teacher and c.dataset.name == "mnist-0-5"]
        assert len({keys(c) for c in taught}) == instances


def test_the_stability_rerun_repeats_the_main_rows_cell_for_cell(registry):
    first = {c.id: c for c in expand(load_spec(ROOT / "studies" / "verdict.toml", registry))}
    spec = load_spec(ROOT / "studies" / "verdict.toml", registry, profile="threads-2")
    second = expand(spec)
    assert len(second) == 720 and spec.train.threads == 2
    assert {c.teacher_name for c in second} == {"none", "alexnet", "lenet", "ensemble"}
    # the same arms and seeds (ids differ: the thread count is part of a cell's identity)
    arms = {(c.dataset.name, c.teacher_name, c.student.name, c.seed) for c in first.values()}
    assert {(c.dataset.name, c.teacher_name, c.student.name, c.seed) for c in second} <= arms
    assert not first.keys() & {c.id for c in second}


def test_the_timed_profiles_are_the_verdicts_own_cells(registry):
    """perf/README times the verdict on MNIST 0-5, its LeNet-taught rows and its vqc/twin
    subsets: the very cells (ids) the verdict runs."""
    verdict = expand(load_spec(ROOT / "studies" / "verdict.toml", registry))
    on_mnist = {c.id for c in verdict if c.dataset.name == "mnist-0-5"}
    timed = {
        name: {
            c.id
            for c in expand(load_spec(ROOT / "studies" / "verdict.toml", registry, profile=name))
        }
        for name in (
            "mnist-0-5",
            "mnist-0-5-lenets",
            "vqc-twin",
            "vqc-twin-mnist",
            "vqc-twin-lenet-taught",
            "vqc-twin-all",
        )
    }
    assert timed["mnist-0-5"] == on_mnist and len(on_mnist) == 220
    assert timed["mnist-0-5-lenets"] < on_mnist and len(timed["mnist-0-5-lenets"]) == 160
    assert timed["vqc-twin"] < timed["mnist-0-5-lenets"] and len(timed["vqc-twin"]) == 60
    # The vqc and twin rows: all of them; with every teacher but AlexNet and the ensemble,
    # on every data set and on both MNIST sets.
    all_rows = [c for c in verdict if c.student.name.startswith(("vqc", "twin"))]
    assert timed["vqc-twin-all"] == {c.id for c in all_rows} and len(all_rows) == 840
    rows = [
        c for c in all_rows if c.teacher is None or c.teacher.name not in ("alexnet", "ensemble")
    ]
    assert timed["vqc-twin-lenet-taught"] == {c.id for c in rows} and len(rows) == 600
    on_mnist_rows = {c.id for c in rows if c.dataset.name.startswith("mnist")}
    assert timed["vqc-twin-mnist"] == on_mnist_rows and len(on_mnist_rows) == 300


def test_the_verdict_shares_the_paper_profiles_teachers(registry):
    verdict = load_spec(ROOT / "studies" / "verdict.toml", registry)
    paper = load_spec(ROOT / "benchmarks.toml", registry)
    dataset = paper.instance("datasets", "fashion-mnist-0-7")
    for ours, theirs in (("alexnet", "alexnet"), ("lenet-0", "lenet")):
        assert cache_key(verdict.instance("teachers", ours), dataset, 0) == cache_key(
            paper.instance("teachers", theirs), dataset, 0
        )


def test_the_vqc_probe_separates_the_two_fixes(registry):
    spec = load_spec(ROOT / "studies" / "vqc-probe.toml", registry)
    first, preset = (spec.instance("students", s).component for s in ("vqc-first", "vqc-q3"))
    assert (first.encoder, first.weight_spread) == ("angle", pytest.approx(math.pi))
    assert (preset.encoder, preset.weight_spread) == ("monotone-angle", 0.1)
    assert len(expand(spec)) == 2 * 5 * 5


def test_the_ablations_vary_one_factor_at_a_time(registry):
    spec = load_spec(ROOT / "studies" / "ablations.toml", registry)
    cells = expand(spec)
    assert len(cells) == 760
    points = {tuple(sorted(c.sweep.items())) for c in cells if c.sweep}
    assert len(points) == 4 * 3 * 2  # λ × τ × τ²
    distillers = {c.distiller_name for c in cells}
    assert distillers == set(registry.names("distillers")) | {"none"}
    teachers = {c.teacher_name for c in cells}
    assert teachers == {
        "none",
        "lenet",
        "lenet-100",
        "lenet-1000",
        "lenet-shuffled",
        "lenet-within",
    }


def test_the_trainable_profile_reruns_the_circuits_half_of_the_ablations(registry):
    full = expand(load_spec(ROOT / "studies" / "ablations.toml", registry))
    half = expand(load_spec(ROOT / "studies" / "ablations.toml", registry, profile="trainable"))
    assert {c.id for c in half} == {c.id for c in full if c.student.name == "vqc-q3"}
    assert len(half) == 380


def test_the_replication_draws_new_seeds_for_the_circuits_and_twins(registry):
    spec = load_spec(ROOT / "studies" / "verdict.toml", registry, profile="seeds-10-19")
    cells = expand(spec)
    assert len(cells) == 360 and {c.seed for c in cells} == set(range(10, 20))
    assert {c.student.name.split("-")[0] for c in cells} == {"vqc", "twin"}


def test_the_notebooks_protocol_runs_the_papers_24_rows_on_20_seeds(registry):
    spec = load_spec(ROOT / "studies" / "notebooks.toml", registry)
    cells = expand(spec)
    assert len(cells) == 520 and {c.seed for c in cells} == set(range(20))
    assert spec.train.batch_size == 1 and spec.train.selection == "best-test"
    assert all(c.dataset.component.order == "first" for c in cells)
    arms = Counter(
        (c.dataset.name, c.teacher.name if c.teacher else "none", c.student.name) for c in cells
    )
    assert set(arms.values()) == {20} and len(arms) == 26  # 24 rows + 2 softmax baselines
    softmax = {arm[0] for arm in arms if arm[2] == "released-q3-softmax"}
    assert softmax == {"fashion-mnist-0-5", "fashion-mnist-0-7"}
    assert all(arm[1] == "none" for arm in arms if arm[2] == "released-q3-softmax")
    distiller = spec.instance("distillers", "notebooks").component
    assert (distiller.temperature, distiller.kd_weight, distiller.ce_weight) == (3.0, 0.9, 1.0)


def test_the_knowledge_test_teaches_with_disjoint_teachers_and_their_controls(registry):
    cells = expand(load_spec(ROOT / "studies" / "knowledge.toml", registry))
    assert len(cells) == 440
    teachers = {c.teacher.name: c.teacher.component for c in cells if c.teacher}
    assert all(teachers[n].disjoint for n in ("lenet", "lenet-within", "lenet-prior"))
    assert not teachers["lenet-seen"].disjoint and teachers["lenet-prior"].class_prior
    # The controls share their real teacher's cache key: one LeNet trained for all three.
    dataset = cells[0].dataset
    keys = {
        cache_key(next(c.teacher for c in cells if c.teacher and c.teacher.name == n), dataset, 0)
        for n in ("lenet", "lenet-within", "lenet-prior")
    }
    assert len(keys) == 1


def test_the_field_study_crosses_the_fields_models_with_teachers_and_controls(registry):
    """studies/field.toml as RESULTS.md describes it: 9 data sets × 9 students × 8 arms × 2
    learning rates × 10 seeds; the QCNN apart; the replication the same cells on new seeds."""
    field = ROOT / "studies" / "field.toml"
    cells = expand(load_spec(field, registry))
    assert len(cells) == 12_960 and {c.seed for c in cells} == set(range(10))
    assert len({c.dataset.name for c in cells}) == 9 and len({c.student.name for c in cells}) == 9
    arms = Counter((c.teacher_name, c.distiller_name) for c in cells)
    assert len(arms) == 8 and set(arms.values()) == {12_960 // 8}
    assert {c.sweep["train.lr"] for c in cells} == {0.01, 0.05}
    qcnn = expand(load_spec(field, registry, profile="qcnn"))
    assert len(qcnn) == 160 and {c.student.name for c in qcnn} == {"qcnn"}
    again = expand(load_spec(field, registry, profile="replication"))
    assert len(again) == 1_440 and {c.seed for c in again} == set(range(10, 20))
    # Each replicated cell is a cell of the first run but for its seed.
    first = {(c.label.rsplit(" · seed", 1)[0]) for c in cells}
    assert {c.label.rsplit(" · seed", 1)[0] for c in again} <= first
