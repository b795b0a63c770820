"""`[train] budgets`: one long run read at several optimizer-step budgets, each exactly what
a run of that many epochs would have given (validation's pick within it, tested)."""

from __future__ import annotations

from kdbench.tracking import Tracker
from tests.helpers import TINY

# 36 training images at batch 16: 3 steps an epoch, so budgets of 3, 6 and 12 steps are the
# ends of epochs 1, 2 and 4.
ALONE = TINY.replace('teachers = ["none", "lenet"]', 'teachers = ["none"]')


def _config(name: str, epochs: int, budgets: str = "") -> str:
    train = f"[train]\nepochs = {epochs}\n{budgets}"
    return ALONE.format(name=name).replace("[train]\nepochs = 2", train)


def _run(write_config, invoke, isolated, name, epochs, budgets=""):
    config = write_config(_config(name, epochs, budgets), f"{name}.toml")
    result = invoke("run", str(config))
    assert result.exit_code == 0, result.output[-3000:]
    tracker = Tracker(f"sqlite:///{isolated}/mlflow.db", name, create=False)
    (run,) = tracker.cell_runs()
    history = {
        key: {m.step: m.value for m in tracker.client.get_metric_history(run.info.run_id, key)}
        for key in ("budget_test_accuracy", "budget_test_loss", "budget_steps", "budget_epoch")
    }
    return run.data.metrics, history


def test_a_budget_reads_what_a_run_of_that_length_gives(write_config, invoke, isolated):
    long, budgets = _run(write_config, invoke, isolated, "long", 4, "budgets = [3, 6, 12]")
    short, _ = _run(write_config, invoke, isolated, "short", 2)
    plain, _ = _run(write_config, invoke, isolated, "plain", 4)
    assert budgets["budget_steps"] == {3: 3, 6: 6, 12: 12}
    assert all(1 <= budgets["budget_epoch"][b] <= b // 3 for b in (3, 6, 12))
    # Two epochs of the long run are the short run, digit for digit ...
    assert budgets["budget_test_loss"][6] == short["test_loss"]
    assert budgets["budget_test_accuracy"][6] == short["test_accuracy"]
    # ... its last budget is its own result, and reading budgets changes no draw of training.
    assert budgets["budget_test_loss"][12] == long["test_loss"] == plain["test_loss"]


def test_budgets_past_the_training_or_on_test_selection_are_refused(write_config, invoke):
    past = write_config(_config("past", 2, "budgets = [3, 30]"))
    result = invoke("run", str(past))
    assert result.exit_code == 2
    assert "train.budgets: 30 steps is past the 2 epochs of 3 steps" in result.output
    assert "Traceback" not in result.output
    on_test = write_config(_config("on-test", 2, 'budgets = [3]\nselection = "best-test"'))
    result = invoke("run", str(on_test))
    assert result.exit_code == 2 and "train.budgets" in result.output
    assert "selection = 'validation'" in result.output
