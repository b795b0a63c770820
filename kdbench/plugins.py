"""Finding plugins (entry-point group `kdbench`) and collecting what they register.

Built-in plugins come through the same entry points as third-party ones. Environment:
- KDBENCH_LOAD_PLUGINS: comma-separated names; only these third-party plugins load
  ("" loads none). Built-ins are not affected.
- KDBENCH_BLOCK_PLUGINS: comma-separated names never to load, built-ins included.
A name is an entry-point name or a distribution name. A plugin that fails to import or
misbehaves is reported in `Registry.plugins` and skipped; the others still load.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy

from kdbench import hookspecs
from kdbench.api import KINDS, Component
from kdbench.errors import PluginError, did_you_mean, one_of
from kdbench.options import describe

GROUP = "kdbench"
BUILTIN_DISTRIBUTION = "kdbench"


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as `kdbench plugins` shows it."""

    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@dataclass
class Registry:
    """Every registered component by kind ('datasets', 'teachers', ...) and name."""

    components: dict[str, dict[str, type[Component]]]
    plugins: list[PluginInfo]
    manager: pluggy.PluginManager
    # Components a plugin registered but that cannot be used: kind -> name -> why.
    refused: dict[str, dict[str, str]] = field(default_factory=dict)
    # Entry points not loaded: name -> the environment variable that kept it out.
    skipped: dict[str, str] = field(default_factory=dict)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> type[Component]:
        """The component class registered as `name`, or a PluginError naming the choices."""
        found = self.components[kind].get(name)
        if found is None:
            why = self.refused.get(kind, {}).get(name)
            if why is not None:
                raise PluginError(f"{kind[:-1]} plugin '{name}' cannot be used: {why}")
            raise PluginError(
                f"unknown {kind[:-1]} plugin '{name}'{did_you_mean(name, self.components[kind])};"
                f" available: {one_of(self.components[kind])}{self.not_loaded_hint(name)}"
            )
        return found

    def not_loaded_hint(self, name: str) -> str:
        """'; ...' saying which plugins the environment kept out (one may provide `name`)."""
        if name in self.skipped:
            return f"; plugin '{name}' is not loaded: {self.skipped[name]}"
        if not self.skipped:
            return ""
        kept_out = ", ".join(f"'{n}' ({why})" for n, why in sorted(self.skipped.items()))
        return f"; not loaded, and perhaps providing it: {kept_out}"

    def owner(self, kind: str, name: str) -> PluginInfo:
        return next(p for p in self.plugins if name in p.registered.get(kind, []))

    def listing(self) -> list[dict[str, Any]]:
        """Every plugin with its hooks, problems and components (summary, options with their
        limits): what `kdbench plugins --json` prints."""
        return [
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "builtin": info.builtin,
                "hooks": info.hooks,
                "registered": {
                    kind: [self._describe(kind, name) for name in names]
                    for kind, names in info.registered.items()
                },
                "problems": info.problems,
            }
            for info in self.plugins
        ]

    def _describe(self, kind: str, name: str) -> dict[str, Any]:
        cls = self.components[kind][name]
        options = [vars(o) for o in describe(cls)]
        return {"name": name, "summary": cls.summary(), "options": options}


def _names(variable: str, environ: Mapping[str, str]) -> set[str] | None:
    if variable not in environ:
        return None
    return {part.strip() for part in environ[variable].split(",") if part.strip()}


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    # Built-ins first, so that they win a name clash with a third-party plugin.
    points = importlib.metadata.entry_points(group=GROUP)
    return sorted(points, key=lambda ep: (_distribution(ep) != BUILTIN_DISTRIBUTION, ep.name))


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "?"


def load_registry(
    environ: Mapping[str, str] | None = None,
    extra: Iterable[tuple[str, object]] = (),
    builtins: bool = True,
) -> Registry:
    """Load plugins from entry points (and `extra` (name, module) pairs) and collect them;
    `builtins=False` leaves kdbench's own out (what listing commands needs: they register
    none, and importing them imports torch and Qiskit, seconds)."""
    environ = os.environ if environ is None else environ
    only, blocked = (
        _names("KDBENCH_LOAD_PLUGINS", environ),
        _names("KDBENCH_BLOCK_PLUGINS", environ),
    )
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    skipped: dict[str, str] = {}

    for ep in _entry_points():
        dist = _distribution(ep)
        if dist == BUILTIN_DISTRIBUTION and not builtins:
            continue
        names = {ep.name, dist}
        if blocked and names & blocked:
            skipped[ep.name] = "blocked by KDBENCH_BLOCK_PLUGINS"
            continue
        if dist != BUILTIN_DISTRIBUTION and only is not None and not names & only:
            skipped[ep.name] = "KDBENCH_LOAD_PLUGINS does not name it"
            continue
        version = ep.dist.version if ep.dist is not None else "?"
        info = infos.setdefault(ep.name, PluginInfo(ep.name, dist, version))
        try:
            manager.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken third-party plugin must not take kdbench down
            info.problems.append(f"failed to load: {type(exc).__name__}: {exc}")
    for name, module in extra:
        infos[name] = PluginInfo(name, getattr(module, "__name__", name), "in-process")
        manager.register(module, name=name)

    components: dict[str, dict[str, type[Component]]] = {kind: {} for kind in KINDS}
    refused: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for kind, base in KINDS.items():
        caller = getattr(manager.hook, f"register_{kind}")
        for impl in reversed(caller.get_hookimpls()):  # pluggy keeps registration order reversed
            info = infos[impl.plugin_name]
            info.hooks.append(f"register_{kind}")

            def register(cls: type, *, _kind: str = kind, _base=base, _info=info) -> None:
                _add(components[_kind], _kind, _base, cls, _info, refused[_kind])

            try:
                impl.function(register=register)
            except Exception as exc:
                info.problems.append(f"register_{kind} failed: {type(exc).__name__}: {exc}")
    for impl in manager.hook.register_commands.get_hookimpls():
        infos[impl.plugin_name].hooks.append("register_commands")
    _check_unknown_hooks(manager, infos)
    return Registry(components, list(infos.values()), manager, refused, skipped)


def _check_unknown_hooks(manager: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    """A hook implementation that matches no hook (a misspelled name) would never be called:
    pluggy's `check_pending`, told to the plugin's own problems instead of raised."""
    known = [name for name in vars(manager.hook) if getattr(manager.hook, name).has_spec()]
    for name, caller in vars(manager.hook).items():
        if name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if not impl.optionalhook:
                infos[impl.plugin_name].problems.append(
                    f"implements '{name}', which is not a kdbench hook"
                    f"{did_you_mean(name, known)}: it is never called"
                )


def _add(
    table: dict[str, type[Component]],
    kind: str,
    base: type,
    cls: type,
    info: PluginInfo,
    refused: dict[str, str],
) -> None:
    name = getattr(cls, "name", None)
    if not (isinstance(cls, type) and issubclass(cls, base) and isinstance(name, str)):
        info.problems.append(
            f"registered {cls!r} as a {kind[:-1]}: not a {base.__name__} with a name"
        )
        return
    if name in table:
        info.problems.append(f"{kind[:-1]} '{name}' is already registered; kept the first")
        return
    problem = cls.definition_problem()
    if problem:
        info.problems.append(f"{kind[:-1]} '{name}' not registered: {problem}")
        refused.setdefault(name, f"{problem} (plugin '{info.name}')")
        return
    table[name] = cls
    info.registered.setdefault(kind, []).append(name)


@cache
def registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    return load_registry()


def component(kind: str, name: str) -> type[Component]:
    """The class registered as `name` for `kind` ('datasets', 'backends', ...).

    For a plugin that builds on another one without importing its module, once plugins are
    loaded (not from a register hook): a backend wrapping `statevector` compiles through
    `kdbench.component("backends", "statevector")()`.
    """
    return registry().get(kind, name)
