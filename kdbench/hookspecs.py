"""The plugin contract: one hook per kind of component, in the register-callback style.

A plugin module implements any of these with `@kdbench.hookimpl` and is found through the
`kdbench` entry-point group, the same way as the built-in plugins in `plugins/`. What each
kind must define is in `kdbench.api` and in docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import pluggy

hookspec = pluggy.HookspecMarker("kdbench")
hookimpl = pluggy.HookimplMarker("kdbench")


@hookspec
def register_datasets(register: Callable[[type], None]) -> None:
    """Register data sets: call `register(cls)` for each `kdbench.Dataset` subclass.

    The class's `name` is what configs write in `plugin = "..."`; its fields are its options.
    """


@hookspec
def register_teachers(register: Callable[[type], None]) -> None:
    """Register teachers: call `register(cls)` for each `kdbench.Teacher` subclass.

    A teacher builds an untrained torch network; kdbench trains, caches and freezes it.
    """


@hookspec
def register_students(register: Callable[[type], None]) -> None:
    """Register students: call `register(cls)` for each `kdbench.Student` subclass.

    A student builds a module that returns class probabilities; a quantum student compiles
    its circuits with `context.compile`, so that kdbench logs and closes them.
    """


@hookspec
def register_encoders(register: Callable[[type], None]) -> None:
    """Register encoders: call `register(cls)` for each `kdbench.Encoder` subclass.

    An encoder contributes the circuit fragment that loads classical features into qubits.
    """


@hookspec
def register_backends(register: Callable[[type], None]) -> None:
    """Register backends: call `register(cls)` for each `kdbench.Backend` subclass.

    A backend turns a parameterized Qiskit circuit into a differentiable torch function
    (`kdbench.CircuitFunction`); sampling backends get gradients from `kdbench.ParameterShift`.
    """


@hookspec
def register_distillers(register: Callable[[type], None]) -> None:
    """Register distillation methods: call `register(cls)` for each `kdbench.Distiller`
    subclass.

    A distiller turns the student's outputs, the labels and the frozen teacher's logits into
    the training loss (`kdbench.Loss`, with its named parts); configs cross it with every
    teacher in `[[matrix]] distillers = [...]`.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the `kdbench` command group (`@cli.command()`)."""
