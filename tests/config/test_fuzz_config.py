"""Property-based fuzzing of config validation: whatever the document, only ConfigError escapes.

Documents are drawn three ways: free-form TOML-like trees whose keys mix kdbench's real section,
option and plugin names with random ones; structured documents with the real sections and
random values; and the valid TINY config with random edits. Each goes through `apply_profile`
and `parse_spec`, as `kdbench run` does; `--set` strings go through `apply_override`.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdbench.config import (
    COMPONENT_KINDS,
    MATRIX_KEYS,
    ExperimentConfig,
    Spec,
    TrainConfig,
    parse_spec,
)
from kdbench.config.files import tomllib  # the standard library's, or tomli before 3.11
from kdbench.config.report import KEYS as REPORT_KEYS
from kdbench.config.report import ReportConfig, parse_report
from kdbench.errors import ConfigError
from kdbench.layering import apply_override, apply_profile
from kdbench.options import describe
from kdbench.plugins import registry as process_registry
from tests.helpers import TINY

REGISTRY = process_registry()
VALID = tomllib.loads(TINY.format(name="fuzz"))

SECTIONS = ["experiment", "train", "distill", *COMPONENT_KINDS, "matrix", "report", "profiles"]
PLUGINS = sorted({name for kind in COMPONENT_KINDS for name in REGISTRY.names(kind)})
OPTIONS = sorted(
    {o.name for cls in (ExperimentConfig, TrainConfig) for o in describe(cls)}
    | {
        o.name
        for kind in COMPONENT_KINDS
        for name in REGISTRY.names(kind)
        for o in describe(REGISTRY.get(kind, name))
    }
)
INSTANCES = ["mnist-0-2", "lenet", "q2", "none", "ens", "quick"]
NAMES = sorted({*SECTIONS, *MATRIX_KEYS, *REPORT_KEYS, *PLUGINS, *OPTIONS, *INSTANCES, "plugin"})

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

names = st.sampled_from(NAMES)
keys = st.one_of(names, names, st.text(max_size=8))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-3, max_value=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),  # TOML's range
    st.floats(allow_nan=True, allow_infinity=True),  # TOML has nan and inf
    names,
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
free_documents = st.dictionaries(keys, values, max_size=6)


@st.composite
def structured_documents(draw) -> dict[str, Any]:
    """The real sections, options and names, with values of any type."""
    doc: dict[str, Any] = {}
    for section in ("experiment", "train", "distill"):
        if draw(st.booleans()):
            doc[section] = draw(st.dictionaries(st.sampled_from(OPTIONS), values, max_size=3))
    for kind in COMPONENT_KINDS:
        if draw(st.booleans()):
            options = st.dictionaries(st.sampled_from(OPTIONS), values, max_size=3)
            plugin = st.one_of(st.sampled_from(PLUGINS), scalars)
            instance = st.one_of(
                st.builds(lambda p, o: {"plugin": p, **o}, plugin, options), options
            )
            doc[kind] = draw(
                st.dictionaries(
                    st.one_of(st.sampled_from(INSTANCES + PLUGINS), keys), instance, max_size=3
                )
            )
    entry = st.dictionaries(
        st.sampled_from(MATRIX_KEYS),
        st.one_of(
            st.lists(st.one_of(st.sampled_from(INSTANCES + PLUGINS), scalars), max_size=3), values
        ),
        max_size=6,
    )
    if draw(st.booleans()):
        doc["matrix"] = draw(st.one_of(st.lists(entry, max_size=3), values))
    if draw(st.booleans()):
        doc["profiles"] = draw(
            st.dictionaries(st.sampled_from(INSTANCES), free_documents, max_size=2)
        )
    return doc


def paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and list indices) into a document."""
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated_valid(draw) -> dict[str, Any]:
    """TINY with a few edits: a value replaced, a key removed, a key added."""
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        where = paths(doc)
        if not where:
            break
        path = draw(st.sampled_from(where))
        *parents, last = path
        node = doc
        for part in parents:
            node = node[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[last] = draw(values)
        elif action == "delete":
            del node[last]
        elif isinstance(node, dict):
            node[draw(keys)] = draw(values)
        else:
            node.append(draw(values))
    return doc


def check(doc: dict[str, Any], profile: str | None = None) -> None:
    """What `kdbench run` does with a parsed document: only a ConfigError may come out."""
    try:
        raw = apply_profile(copy.deepcopy(doc), profile, "fuzz.toml")
        spec = parse_spec(raw, "fuzz.toml", REGISTRY)
    except ConfigError:
        return  # the CLI prints it on one line, control characters escaped
    assert isinstance(spec, Spec)


@FUZZ
@given(free_documents)
def test_free_form_documents(doc):
    check(doc)


@FUZZ
@given(structured_documents(), st.one_of(st.none(), st.sampled_from(INSTANCES)))
def test_structured_documents(doc, profile):
    check(doc, profile)


@FUZZ
@given(mutated_valid())
def test_mutated_valid_config(doc):
    check(doc)


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from(REPORT_KEYS), keys), values, max_size=4))
def test_report_sections(raw):
    """[report] alone: parsed, or a ConfigError."""
    try:
        report = parse_report(raw, "fuzz.toml")
    except ConfigError:
        return
    assert isinstance(report, ReportConfig)


def test_the_valid_config_passes():
    check(VALID)
    assert parse_spec(copy.deepcopy(VALID), "fuzz.toml", REGISTRY).matrix


dotted = st.lists(st.one_of(names, st.text(max_size=5)), min_size=0, max_size=4).map(".".join)
override_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "1",
            "-1",
            "0",
            "1.5",
            "nan",
            "inf",
            "true",
            "[1, 2]",
            "[",
            "{a = 1}",
            '"x"',
            "[[[[[[[[1]]]]]]]]",
            "[" * 2000,
            "ring",
            "2 = 3",
            "\n",
        ]
    ),
)
overrides = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", dotted, override_values),
    st.text(max_size=30),
)


@FUZZ
@given(st.lists(overrides, min_size=1, max_size=3))
def test_set_overrides(texts):
    """`--set` strings on the valid config: a ConfigError or a valid spec, nothing else."""
    raw = copy.deepcopy(VALID)
    try:
        for text in texts:
            raw = apply_override(raw, text, "fuzz.toml")
    except ConfigError:
        return
    check(raw)


def edited(path: tuple, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    *parents, last = path
    node = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


# What fuzzing found: each once crashed, hung or was accepted.
FOUND = [
    # apply_profile took every [profiles.X.kind] for a table: AttributeError.
    ("profile-kind-not-a-table", {**VALID, "profiles": {"q": {"students": 3}}}, "q", True),
    ("profile-base-kind-not-a-table", {**VALID, "students": [1], "profiles": {"q": {}}}, "q", True),
    # TOML's nan and inf passed every bound (nan < 0 is false).
    ("lr-nan", edited(("train", "lr"), float("nan")), None, True),
    ("temperature-inf", {**VALID, "distill": {"temperature": float("inf")}}, None, True),
    ("scale-nan", {**VALID, "encoders": {"angle": {"scale": float("nan")}}}, None, True),
    # An empty [[matrix]] list ran nothing, after creating the store.
    ("matrix-empty", edited(("matrix",), []), None, True),
    # 2**qubits for the readout check never finished.
    ("qubits-huge", edited(("students", "q2", "qubits"), 2**62), None, False),
]


@pytest.mark.parametrize(
    ("doc", "profile", "refused"), [f[1:] for f in FOUND], ids=[f[0] for f in FOUND]
)
def test_found_by_fuzzing(doc, profile, refused):
    if refused:
        with pytest.raises(ConfigError):
            raw = apply_profile(copy.deepcopy(doc), profile, "fuzz.toml")
            parse_spec(raw, "fuzz.toml", REGISTRY)
    else:
        check(doc, profile)


def test_deeply_nested_toml_is_a_config_error(tmp_path):
    from kdbench.config import load_spec

    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_spec(path, REGISTRY)
    with pytest.raises(ConfigError, match="nested too deeply"):
        apply_override(copy.deepcopy(VALID), "train.epochs=" + "[" * 5000, "fuzz.toml")
