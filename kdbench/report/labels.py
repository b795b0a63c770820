"""How report rows are named: data-set family and label, teacher and student labels.

A label comes from the logged plugin's `title` (see `Component.title`), formatted with the
options logged for that component, unless [report.labels] names the instance; a plugin
without a title, or one no longer installed, is named by its instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

from kdbench.constants import NO_TEACHER
from kdbench.plugins import registry

Labels = Mapping[str, str]  # instance (of any kind) -> label, from [report.labels]
NO_LABELS: Labels = MappingProxyType({})


class _Options(dict):
    """Logged options for `str.format_map`; an option the run did not log shows as '?'."""

    def __missing__(self, key: str) -> str:
        return "?"


def title(params: Mapping[str, str], prefix: str, instance: str) -> str | None:
    """The title of the plugin logged as `<prefix>.plugin` ('dataset', 'teacher', 'student'),
    formatted with the options logged under `<prefix>.`; None without one."""
    cls = registry().components[f"{prefix}s"].get(params.get(f"{prefix}.plugin", ""))
    if cls is None or cls.title is None:
        return None
    options = _Options(
        {k.removeprefix(f"{prefix}."): v for k, v in params.items() if k.startswith(f"{prefix}.")},
        instance=instance,
    )
    return cls.title.format_map(options)


def dataset_label(
    params: Mapping[str, str], instance: str, labels: Labels = NO_LABELS
) -> tuple[str, str]:
    """(family, label): ('MNIST', 'MNIST 0-5') for a titled data set's classes 0..5; a data
    set of other classes, or without a title, is labelled by its instance."""
    named = title(params, "dataset", instance)
    family = named or params.get("dataset.plugin") or instance
    if instance in labels:
        return family, labels[instance]
    logged = params.get("dataset.classes", "None")  # a list as JSON, or None: every class
    classes = None if logged in ("None", "") else json.loads(logged)
    if named and classes and classes == list(range(len(classes))):
        return family, f"{family} 0-{len(classes) - 1}"
    return family, instance


def teacher_label(
    params: Mapping[str, str], instance: str, labels: Labels = NO_LABELS, alone: str = "none"
) -> str:
    """The teacher's label; `alone` for a student trained without one."""
    if instance == NO_TEACHER:
        return alone
    label = labels.get(instance) or title(params, "teacher", instance) or instance
    if params.get("teacher.disjoint") == "True":
        label = f"{label}, disjoint"
    if params.get("teacher.class_prior") == "True":
        return f"{label} (class means)"
    if params.get("teacher.shuffled") != "True":
        return label
    within = params.get("teacher.within_class") == "True"
    return f"{label} (outputs shuffled{' within class' if within else ''})"


def student_label(params: Mapping[str, str], instance: str, labels: Labels = NO_LABELS) -> str:
    """The student's label; a model's separable ablation (`entangle = false`) is named apart
    from the model, unless [report.labels] names it."""
    if instance in labels:
        return labels[instance]
    label = title(params, "student", instance) or instance
    return f"{label}, no entanglement" if params.get("student.entangle") == "False" else label
