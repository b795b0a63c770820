"""The teachers of flattened inputs, `mlp` and `sklearn`, on scikit-learn's breast-cancer
table: they learn it, their outputs are seeded and cached, bad options and a distiller of
features with a teacher that is no network are refused in one line before anything runs."""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import kdbench
from kdbench.config import load_spec
from kdbench.errors import ConfigError, KdbenchError
from kdbench.teachers import forget_prepared, prepare_teacher
from kdbench.testing import make, plugin_registry, run_config


@dataclass(kw_only=True)
class Cancer(kdbench.Dataset):
    """scikit-learn's breast-cancer table: a quarter of each class held out to test, the
    30 features standardised with the training rows' mean and deviation (float32)."""

    name: ClassVar[str] = "cancer"
    class_names: ClassVar[tuple[str, ...]] = ("malignant", "benign")
    input_shape: ClassVar[tuple[int, ...]] = (30,)

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_breast_cancer

        table = load_breast_cancer()
        x = torch.as_tensor(table.data, dtype=torch.float64)
        y = torch.as_tensor(table.target)
        test = torch.arange(len(y)) % 4 == 0
        train = x[~test]
        x = (x - train.mean(0)) / train.std(0)
        chosen = test if split == "test" else ~test
        return x[chosen].float(), y[chosen]


def registry():
    module = types.ModuleType("cancer_plugin")
    module.register_datasets = kdbench.hookimpl(lambda register: register(Cancer))
    return plugin_registry(module)


CONFIG = """
[experiment]
name = "flat-teachers"
seeds = [0]

[train]
epochs = 1
batch_size = 16

[datasets.cancer]
train_per_class = 40
val_per_class = 30
test_per_class = 50

[teachers.mlp]              # its defaults, on a smaller pool (the test's time)
train_per_class = 60

[teachers.mlp-short]        # the seed tests: a few epochs show a seed's effect
plugin = "mlp"
epochs = 5

[teachers.forest]
plugin = "sklearn"
estimator = "sklearn.ensemble.RandomForestClassifier"
params = {n_estimators = 10}

[students.pqc]
plugin = "pqc"
qubits = 2
front = "linear"
"""


@pytest.fixture
def prepare(tmp_path):
    """prepare(teacher, seed, cache) -> the PreparedTeacher of the config's teacher."""
    every = '["mlp", "sklearn", "mlp-short", "forest"]'
    text = CONFIG + f'\n[[matrix]]\ndatasets = ["cancer"]\nteachers = {every}\nstudents = ["pqc"]\n'
    spec = load_spec(_write(tmp_path, text), registry())

    def prepare(name: str, seed: int = 0, cache: Path = tmp_path / "cache"):
        return prepare_teacher(
            spec.instance("teachers", name),
            spec.instance("datasets", "cancer"),
            tmp_path,
            seed,
            cache,
            members=lambda n: spec.instance("teachers", n),
        )

    return prepare


def _write(folder: Path, text: str) -> Path:
    path = folder / "config.toml"
    path.write_text(text)
    return path


def _outputs(prepared, n: int = 40) -> torch.Tensor:
    """The teacher's outputs on the first `n` standardised rows of the table."""
    x, _ = Cancer().load(Path(), "train")
    return prepared.model(x[:n])


@pytest.mark.parametrize("teacher", ["mlp", "sklearn"])
def test_each_learns_the_table_at_its_defaults(prepare, teacher):
    """Logistic regression reaches ~0.97 on these features; both are above 0.93 (the mlp
    from 60 rows per class, the scikit-learn teacher from all)."""
    prepared = prepare(teacher)
    assert prepared.source == "trained"
    assert prepared.val_accuracy > 0.93 and prepared.test_accuracy > 0.93


def test_the_mlp_exposes_its_last_hidden_layer_as_features(prepare):
    prepared = prepare("mlp-short")
    layer = make(registry(), "teachers", "mlp").classifier_layer(prepared.network)
    assert isinstance(layer, torch.nn.Linear) and layer.in_features == 64


def test_sklearn_outputs_are_log_probabilities(prepare):
    prepared = prepare("sklearn")
    logits = _outputs(prepared)
    assert logits.dtype == torch.float32 and logits.shape == (40, 2)
    torch.testing.assert_close(logits.exp().sum(1), torch.ones(40))
    # log(max(p, tiny)): a distiller's softmax(logits / T) is p^(1/T), renormalised.
    estimator = prepared.network.model.estimator
    x, _ = Cancer().load(Path(), "train")
    probs = torch.as_tensor(estimator.predict_proba(x[:40].numpy()))
    tempered = probs ** (1 / 3) / (probs ** (1 / 3)).sum(1, keepdim=True)
    torch.testing.assert_close(torch.softmax(logits / 3, 1).double(), tempered, atol=1e-6, rtol=0)


@pytest.mark.parametrize("teacher", ["mlp-short", "forest"])
def test_a_seed_gives_the_same_teacher_and_another_seed_another(prepare, tmp_path, teacher):
    first = _outputs(prepare(teacher, 0, tmp_path / "a"))
    forget_prepared()
    assert torch.equal(_outputs(prepare(teacher, 0, tmp_path / "b")), first)
    assert not torch.allclose(_outputs(prepare(teacher, 1, tmp_path / "a")), first)


def test_a_fitted_teachers_outputs_are_cached_and_it_is_fitted_again_only_when_needed(prepare):
    first = prepare("forest")
    assert first.source == "trained" and first.network.fitted
    known = _outputs(first)
    forget_prepared()
    second = prepare("forest")  # its validation and test outputs: from the cache
    assert second.source == "cache" and not second.network.fitted
    assert second.test_accuracy == first.test_accuracy
    assert torch.equal(_outputs(second), known) and not second.network.fitted
    x, _ = Cancer().load(Path(), "test")
    unseen = x[:5] + 0.01  # no output cached: fitted again, the same forest
    # (first's own forest: first's memo would read second's outputs from the shared cache)
    assert torch.equal(second.model(unseen), first.network.model(unseen))
    assert second.network.fitted


def test_the_mlp_is_read_from_the_cache(prepare):
    assert prepare("mlp-short").source == "trained"
    forget_prepared()
    assert prepare("mlp-short").source == "cache"


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        (
            "sklearn",
            {"estimator": "sklearn.ensemble.RandomForestClassifer"},
            "estimator: module 'sklearn.ensemble' has no 'RandomForestClassifer' (did you"
            " mean 'RandomForestClassifier'?)",
        ),
        ("sklearn", {"estimator": "sklearn.nowhere.Tree"}, "cannot import 'sklearn.nowhere'"),
        ("sklearn", {"estimator": "pathlib.Path"}, "is not a scikit-learn estimator class"),
        (
            "sklearn",
            {"estimator": "sklearn.linear_model.LinearRegression"},
            "LinearRegression has no predict_proba",
        ),
        ("sklearn", {"estimator": "sklearn.svm.SVC"}, "SVC's probability = true"),
        (
            "sklearn",
            {"params": {"max_iters": 10}},
            "params: HistGradientBoostingClassifier takes no parameter 'max_iters' (did you"
            " mean 'max_iter'?)",
        ),
        ("sklearn", {"params": {"max_iter": 0}}, "The 'max_iter' parameter of"),
        ("sklearn", {"params": {"random_state": 3}}, "random_state is the teacher's seed"),
        ("sklearn", {"epochs": 3}, "unknown option 'epochs'; allowed: class_prior"),
        ("mlp", {"activation": "relu6"}, "expected 'relu' | 'tanh'"),
        ("mlp", {"hidden": [64, 0]}, "must be >= 1"),
    ],
)
def test_bad_options_are_refused_in_one_line(kind, options, message):
    with pytest.raises(ConfigError) as refused:
        make(registry(), "teachers", kind, **options)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_an_svc_that_gives_probabilities_is_taken():
    svc = make(
        registry(), "teachers", "sklearn", estimator="sklearn.svm.SVC", params={"probability": True}
    )
    assert svc.build(2, (30,)).estimator.probability


@pytest.mark.parametrize("teacher", ["sklearn", "mlp-short"])
def test_a_distiller_of_features_needs_a_network_teacher(tmp_path, teacher):
    """Refused before anything is logged with the scikit-learn teacher; the mlp teaches."""
    text = CONFIG + (
        f'\n[[matrix]]\ndatasets = ["cancer"]\nteachers = ["{teacher}"]\nstudents = ["pqc"]\n'
        'distillers = ["fitnet"]\n'
    )
    config, store = _write(tmp_path, text), tmp_path / "store"
    if teacher == "mlp-short":
        ran = run_config(config, registry(), store=store, data_root=tmp_path)
        assert ran.finished, ran.errors
        return
    with pytest.raises(KdbenchError) as refused:
        run_config(config, registry(), store=store, data_root=tmp_path)
    message = str(refused.value)
    assert "distiller 'fitnet' distils features, and teacher 'sklearn' exposes none" in message
    assert "\n" not in message and not (store / "mlflow.db").exists()


def test_a_fitted_teacher_teaches_a_student(tmp_path):
    text = (
        CONFIG + '\n[[matrix]]\ndatasets = ["cancer"]\nteachers = ["forest"]\nstudents = ["pqc"]\n'
    )
    ran = run_config(_write(tmp_path, text), registry(), store=tmp_path / "store")
    assert ran.finished, ran.errors
    (run,) = ran.runs()
    assert run.data.params["teacher.params.n_estimators"] == "10"
    assert run.data.metrics["teacher_test_accuracy"] > 0.9
    assert run.data.metrics["train_kd"] > 0  # the teacher's distribution reached the loss
