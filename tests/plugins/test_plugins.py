"""The plugin manager with plugins that are not part of kdbench, found through entry points:
listed, loaded, restricted or blocked, and said so when a config names one that is not loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kdbench.errors import PluginError
from kdbench.plugins import load_registry
from tests.helpers import TINY, VALID, assert_clean_failure, replace

FOREIGN = '''
"""A third-party plugin: a tiny MLP teacher."""
from dataclasses import dataclass
from typing import ClassVar

from torch import nn

import kdbench


@dataclass(kw_only=True)
class TinyMlp(kdbench.Teacher):
    """A one-hidden-layer perceptron."""

    name: ClassVar[str] = "tiny-mlp"
    hidden: int = kdbench.option(32, help="hidden units", minimum=1)

    def build(self, num_classes, image_shape):
        c, h, w = image_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, self.hidden), nn.ReLU(),
                             nn.Linear(self.hidden, num_classes))


@kdbench.hookimpl
def register_teachers(register):
    register(TinyMlp)


@kdbench.hookimpl
def register_commands(cli):
    @cli.command(name="hello-foo")
    def hello():
        """Say hello from the foreign plugin."""
        print("hello from kdbench-foo")
'''


def install_distribution(site: Path, dist: str, module: str, source: str, group: str) -> None:
    """Lay out an installed distribution (module + dist-info with entry points) in `site`."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{dist} = {module}\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site, "kdbench-foo", "kdbench_foo", FOREIGN, "kdbench")
    install_distribution(
        site,
        "kdbench-broken",
        "kdbench_broken",
        "raise ImportError('this plugin is broken on purpose')\n",
        "kdbench",
    )
    return site


def kdbench(site: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run(
        [sys.executable, "-m", "kdbench", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_builtins_register_through_entry_points():
    registry = load_registry(environ={})
    assert {"mnist", "fashion-mnist"} <= set(registry.names("datasets"))
    assert "lenet" in registry.names("teachers") and "pqc" in registry.names("students")
    assert "statevector" in registry.names("backends") and "angle" in registry.names("encoders")
    assert all(p.builtin and not p.problems for p in registry.plugins)
    # `kdbench --help` imports only third-party plugins to list their commands.
    assert not any("register_commands" in p.hooks for p in registry.plugins)


def test_every_builtin_component_pickles_as_worker_processes_get_it(registry):
    """Cells reach worker processes and Ray tasks by pickle, their components by class
    reference: a preset's class must be found in the module it says it is in."""
    import pickle

    for kind, classes in registry.components.items():
        for name, cls in classes.items():
            assert pickle.loads(pickle.dumps(cls)) is cls, f"{kind} {name}"
            assert type(pickle.loads(pickle.dumps(cls()))) is cls, f"{kind} {name}"


def test_foreign_plugin_is_listed_and_a_broken_one_is_reported(site, tmp_path):
    listed = kdbench(site, "plugins", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    foo = plugins["kdbench-foo"]
    assert foo["version"] == "0.3" and not foo["builtin"]
    assert foo["hooks"] == ["register_teachers", "register_commands"]
    (teacher,) = foo["registered"]["teachers"]
    assert teacher["name"] == "tiny-mlp"
    assert teacher["options"][-1]["name"] == "hidden"
    assert "this plugin is broken on purpose" in plugins["kdbench-broken"]["problems"][0]
    assert "lenet" in [t["name"] for t in plugins["teachers"]["registered"]["teachers"]]
    hello = kdbench(site, "hello-foo", cwd=tmp_path)
    assert hello.stdout.strip() == "hello from kdbench-foo"
    assert "hello-foo" in kdbench(site, "--help", cwd=tmp_path).stdout


def test_help_imports_neither_torch_nor_qiskit(tmp_path):
    """`kdbench --help` lists plugins' commands without importing the built-in plugins
    (they register none): a second of startup, not several."""
    code = (
        "import sys\n"
        "from kdbench.cli import cli\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({'torch', 'qiskit'} & set(sys.modules)))\n"
    )
    environ = {**os.environ, "KDBENCH_LOAD_PLUGINS": ""}
    shown = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
    )
    assert shown.returncode == 0, shown.stderr
    assert "run" in shown.stdout and "report" in shown.stdout
    assert shown.stdout.strip().splitlines()[-1] == "[]"


def test_foreign_teacher_teaches_in_a_run(site, tmp_path):
    config = tmp_path / "foreign.toml"
    config.write_text(
        TINY.format(name="foreign").replace(
            "[teachers.lenet]", "[teachers.lenet]\nplugin = 'tiny-mlp'"
        )
    )
    result = kdbench(site, "run", str(config), cwd=tmp_path, KDBENCH_CACHE=str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    assert "2 cells finished, 0 already done, 0 failed" in result.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs(
        [client.get_experiment_by_name("foreign").experiment_id],
        filter_string="params.`teacher.plugin` = 'tiny-mlp'",
    )
    assert len(runs) == 1
    assert runs[0].data.params["plugin.kdbench-foo.version"] == "0.3"
    assert runs[0].data.params["teacher.hidden"] == "32"


def test_environment_restricts_and_blocks_plugins(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    everything = load_registry(environ={})
    assert "tiny-mlp" in everything.names("teachers")
    only_builtins = load_registry(environ={"KDBENCH_LOAD_PLUGINS": ""})
    assert "tiny-mlp" not in only_builtins.names("teachers")
    assert "lenet" in only_builtins.names("teachers")
    assert {p.name for p in only_builtins.plugins if not p.builtin} == set()
    chosen = load_registry(environ={"KDBENCH_LOAD_PLUGINS": "kdbench-foo"})
    assert "tiny-mlp" in chosen.names("teachers")
    assert "kdbench-broken" not in {p.name for p in chosen.plugins}
    blocked = load_registry(environ={"KDBENCH_BLOCK_PLUGINS": "kdbench-foo, teachers"})
    assert "tiny-mlp" not in blocked.names("teachers") and "lenet" not in blocked.names("teachers")


def test_misbehaving_registration_is_reported(monkeypatch):
    import types

    import kdbench

    bad = types.ModuleType("bad_plugin")

    @kdbench.hookimpl
    def register_students(register):
        register(object)
        register(kdbench.Teacher)  # right base for another kind, and nameless

    bad.register_students = register_students
    registry = load_registry(environ={"KDBENCH_LOAD_PLUGINS": ""}, extra=[("bad", bad)])
    problems = next(p for p in registry.plugins if p.name == "bad").problems
    assert len(problems) == 2 and "not a Student" in problems[0]
    assert "pqc" in registry.names("students")


def test_a_misspelled_hook_and_a_missing_method_are_problems_at_registration():
    """Either would otherwise surface late or never: a hook pluggy never calls, a method
    the base class only declares (found when a cell first calls it)."""
    import types
    from dataclasses import dataclass

    import kdbench

    plugin = types.ModuleType("sloppy_plugin")

    @kdbench.hookimpl
    def register_studnets(register):  # sic
        raise AssertionError("never called")

    @dataclass(kw_only=True)
    class NoLoss(kdbench.Distiller):
        name = "no-loss"

    @dataclass(kw_only=True)
    class Hollow(kdbench.Teacher):
        name = "hollow"

        def member_names(self) -> list[str]:
            return ["lenet"]

    @kdbench.hookimpl
    def register_distillers(register):
        register(NoLoss)

    @kdbench.hookimpl
    def register_teachers(register):
        register(Hollow)

    plugin.register_studnets = register_studnets
    plugin.register_distillers = register_distillers
    plugin.register_teachers = register_teachers
    registry = load_registry(environ={"KDBENCH_LOAD_PLUGINS": ""}, extra=[("sloppy", plugin)])
    problems = next(p for p in registry.plugins if p.name == "sloppy").problems
    assert any(
        "implements 'register_studnets', which is not a kdbench hook (did you mean"
        " 'register_students'?)" in p
        for p in problems
    ), problems
    assert any(
        "distiller 'no-loss' not registered: does not implement loss" in p for p in problems
    ), problems
    assert any(
        "teacher 'hollow' not registered: does not implement combine" in p for p in problems
    ), problems
    with pytest.raises(PluginError, match="distiller plugin 'no-loss' cannot be used"):
        registry.get("distillers", "no-loss")
    assert all(not p.problems for p in registry.plugins if p.builtin)  # built-ins are whole


# -- a plugin a config names that is not loaded: blocked, or not named --


@pytest.mark.parametrize(
    ("blocked", "text", "message"),
    [
        (
            "aer",
            replace('backends = ["statevector"]', 'backends = ["aer"]'),
            "unknown backend 'aer'; defined or available: density-matrix, ibm-runtime, "
            "statevector; plugin 'aer'"
            " is not loaded: blocked by KDBENCH_BLOCK_PLUGINS",
        ),
        (
            "aer",
            VALID + '\n[backends.noisy]\nplugin = "aer"\n',
            "backends.noisy.plugin: unknown backend plugin 'aer'; available: density-matrix,"
            " ibm-runtime, statevector; plugin 'aer' is not loaded: blocked by"
            " KDBENCH_BLOCK_PLUGINS",
        ),
        (
            "datasets",
            VALID,
            "datasets.mnist-0-2.plugin: unknown dataset plugin 'mnist'; available: (none);"
            " not loaded, and perhaps providing it: 'datasets' (blocked by KDBENCH_BLOCK_PLUGINS)",
        ),
    ],
    ids=["bare-name", "plugin-option", "other-entry-point"],
)
def test_unknown_plugin_says_it_is_blocked(
    monkeypatch, fresh_registry, write_config, invoke, isolated, blocked, text, message
):
    monkeypatch.setenv("KDBENCH_BLOCK_PLUGINS", blocked)
    assert_clean_failure(invoke("run", str(write_config(text))), message, isolated)


def test_unknown_plugin_without_blocking_has_no_hint():
    with pytest.raises(PluginError) as exc:
        load_registry(environ={}).get("backends", "aerr")
    assert "not loaded" not in str(exc.value) and "did you mean 'aer'" in str(exc.value)


def test_unknown_plugin_says_which_third_party_plugins_were_not_loaded(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    assert "tiny-mlp" in load_registry(environ={}).names("teachers")
    with pytest.raises(PluginError) as exc:
        load_registry(environ={"KDBENCH_LOAD_PLUGINS": ""}).get("teachers", "tiny-mlp")
    assert str(exc.value).endswith(
        "; not loaded, and perhaps providing it: 'kdbench-broken' (KDBENCH_LOAD_PLUGINS does"
        " not name it), 'kdbench-foo' (KDBENCH_LOAD_PLUGINS does not name it)"
    )
