"""`also_test_on`: a trained student tested on a ladder of noisy backends, and the report's
noise-sensitivity section (drops, their paired difference, Holm) on a real MLflow store."""

from __future__ import annotations

import math

import pytest

from kdbench.config import load_spec
from kdbench.errors import ConfigError
from kdbench.matrix import expand
from kdbench.report.noise import noise_rows
from kdbench.report.stats import summarize
from kdbench.results import Result
from kdbench.tracking import Tracker
from tests.helpers import TINY

LADDER = (
    TINY.replace(
        'backends = ["statevector"]',
        'backends = ["statevector", "noisy"]\nalso_test_on = ["clean", "noisy", "manila"]',
    )
    + """
[backends.clean]
plugin = "density-matrix"

[backends.noisy]
plugin = "density-matrix"
depolarizing = 0.05

[backends.manila]
plugin = "density-matrix"
noise = "FakeManilaV2"
"""
)


def test_a_ladder_tests_each_trained_student_again_and_the_report_compares_drops(
    write_config, invoke, isolated
):
    config = write_config(LADDER.format(name="ladder"))
    result = invoke("run", str(config))
    assert result.exit_code == 0, result.output[-3000:]
    assert "4 cells finished" in result.stdout
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", "ladder", create=False)
    results = [Result.from_run(run) for run in tracker.cell_runs()]
    assert {r.backend for r in results} == {"statevector", "noisy"}
    for r in results:
        assert list(r.also) == list(r.also_loss) == ["clean", "noisy", "manila"]
        if r.backend == "statevector":  # the noiseless rung is the exact simulation
            assert math.isclose(r.also["clean"], r.test_accuracy)
            run = tracker.client.get_run(r.run_id)
            assert math.isclose(r.also_loss["clean"], run.data.metrics["test_loss"], rel_tol=1e-6)
        else:  # trained under noise: its own test is the noisy rung
            assert math.isclose(r.also["noisy"], r.test_accuracy)
    rows = noise_rows(summarize(results))
    assert {(r.arm.backend, r.rung) for r in rows} == {
        (b, rung) for b in ("statevector", "noisy") for rung in ("noisy", "manila")
    }
    for row in rows:  # one seed: the paired difference of the drops, without a test
        assert row.reference == "clean"
        assert math.isclose(row.gain.mean, row.drop - row.alone_drop, abs_tol=1e-12)
    report = invoke("report", str(config))
    assert report.exit_code == 0, report.output[-3000:]
    assert "accuracy drop on the test ladder" in report.stdout
    folder = isolated / "kdbench-results" / "ladder"
    assert (folder / "noise-accuracy.png").stat().st_size > 1000
    table = (folder / "noise.md").read_text()
    assert "Δ drop" in table and "manila" in table
    assert "Less / more drop" in (folder / "noise-pooled.md").read_text()
    assert "Δ rise" in (folder / "noise-loss.md").read_text()


def test_drops_are_paired_by_seed_and_holm_adjusted_over_the_table():
    from scipy import stats

    def result(teacher: str, distiller: str, seed: int, ladder: dict[str, float]) -> Result:
        return Result("d", teacher, "s", "exact", distiller, seed, ladder["clean"], also=ladder)

    alone = {0: (0.80, 0.70), 1: (0.82, 0.74), 2: (0.78, 0.69)}  # seed: (clean, noisy)
    taught = {0: (0.81, 0.77), 1: (0.83, 0.78), 2: (0.80, 0.75)}
    results = [result("none", "none", s, {"clean": c, "noisy": n}) for s, (c, n) in alone.items()]
    results += [result("t", "paper", s, {"clean": c, "noisy": n}) for s, (c, n) in taught.items()]
    results += [result("u", "paper", s, {"clean": c, "noisy": c}) for s, (c, _) in alone.items()]
    rows = noise_rows(summarize(results))
    by_teacher = {r.arm.teacher: r for r in rows}
    drops = [c - n for c, n in taught.values()]
    alone_drops = [c - n for c, n in alone.values()]
    gain = by_teacher["t"].gain
    assert math.isclose(gain.mean, sum(drops) / 3 - sum(alone_drops) / 3)
    assert math.isclose(gain.p_value, stats.ttest_rel(drops, alone_drops).pvalue)
    p_values = sorted(r.gain.p_value for r in rows)
    assert math.isclose(min(r.gain.p_adjusted for r in rows), 2 * p_values[0])  # m = 2
    assert by_teacher["u"].drop == 0 and by_teacher["u"].gain.mean < 0  # no drop at all


def test_the_cross_entropy_rise_is_paired_like_the_accuracy_drop():
    """Noise that shrinks the probabilities towards uniform leaves the argmax (the accuracy)
    alone and raises the cross-entropy: the loss rows see it, with the sign of a drop."""

    def result(teacher: str, seed: int, loss: dict[str, float]) -> Result:
        also = dict.fromkeys(loss, 0.8)
        distiller = "none" if teacher == "none" else "paper"
        return Result("d", teacher, "s", "exact", distiller, seed, 0.8, also=also, also_loss=loss)

    alone = {0: (0.50, 0.90), 1: (0.55, 1.00), 2: (0.45, 0.80)}  # seed: (clean, noisy) CE
    taught = {0: (0.40, 0.60), 1: (0.42, 0.65), 2: (0.41, 0.58)}
    results = [result("none", s, {"clean": c, "noisy": n}) for s, (c, n) in alone.items()]
    results += [result("t", s, {"clean": c, "noisy": n}) for s, (c, n) in taught.items()]
    rows = summarize(results)
    (accuracy,) = noise_rows(rows)
    assert accuracy.drop == accuracy.alone_drop == 0
    (loss,) = noise_rows(rows, "loss")
    rises = [n - c for c, n in taught.values()]
    alone_rises = [n - c for c, n in alone.values()]
    assert math.isclose(loss.drop, sum(rises) / 3) and loss.drop > 0
    assert math.isclose(loss.gain.mean, sum(rises) / 3 - sum(alone_rises) / 3)
    assert loss.gain.mean < 0  # the taught student's loss rose less


def test_the_ladder_is_part_of_a_cells_identity_only_when_set(write_config, registry):
    plain = expand(load_spec(write_config(TINY.format(name="x")), registry))
    text = (
        TINY.format(name="x").replace(
            'backends = ["statevector"]', 'backends = ["statevector"]\nalso_test_on = ["clean"]'
        )
        + '\n[backends.clean]\nplugin = "density-matrix"\n'
    )
    laddered = expand(load_spec(write_config(text, "b.toml"), registry))
    assert [c.also_test_on for c in plain] == [()] * len(plain)
    assert "also_test_on" not in plain[0].config()
    assert {c.id for c in plain}.isdisjoint(c.id for c in laddered)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"clean"', "expected a list of backend names"),
        ('["clean", "clean"]', "names a backend twice"),
        ('["cleen"]', "did you mean 'clean'"),
    ],
)
def test_a_bad_ladder_is_refused_with_its_key(write_config, registry, value, message):
    text = (
        TINY.format(name="x").replace(
            'backends = ["statevector"]', f'backends = ["statevector"]\nalso_test_on = {value}'
        )
        + '\n[backends.clean]\nplugin = "density-matrix"\n'
    )
    with pytest.raises(ConfigError, match=message) as error:
        load_spec(write_config(text), registry)
    assert "also_test_on" in str(error.value)
