"""Gate angles as linear functions of circuit parameters: `slope * values[column] + offset`
(one parameter) or `sum(slopes[c] * values[c]) + offset` (several, after a transpiler merged
rotations)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Below this, an imaginary part is rounding noise.
_IMAG_TOL = 1e-12


def parameter_columns(inputs: Sequence[Any], weights: Sequence[Any]) -> dict[Any, int]:
    """Each Parameter's column in a call's values (the inputs, then the weights): the
    `columns` that `linear_angle` and `linear_form` read. Raise ValueError for a Parameter
    listed twice."""
    columns: dict[Any, int] = {}
    for column, param in enumerate([*inputs, *weights]):
        if param in columns:
            raise ValueError(f"parameter '{param.name}' is listed twice in inputs/weights")
        columns[param] = column
    return columns


def linear_angle(
    value: Any, columns: Mapping[Any, int], where: str
) -> tuple[int | None, float, float]:
    """(column, slope, offset) of a gate angle `slope * values[column] + offset`.

    `columns` maps each allowed Parameter to its column; column is None for a constant angle.
    Raise ValueError, starting with `where`, for an angle of another form.
    """
    from qiskit.circuit import ParameterExpression

    if not isinstance(value, ParameterExpression):
        try:
            return None, 0.0, float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: angle {value!r} is not a real number") from None
    if not value.parameters:
        return None, 0.0, _real(value, where)
    if len(value.parameters) > 1:
        names = ", ".join(sorted(p.name for p in value.parameters))
        raise ValueError(f"{where}: angle {value} depends on several parameters ({names})")
    slopes, offset = linear_form(value, columns, where)
    ((column, slope),) = slopes.items()
    return column, slope, offset


def linear_form(
    value: Any, columns: Mapping[Any, int], where: str
) -> tuple[dict[int, float], float]:
    """({column: slope}, offset) of a gate angle `sum(slope * values[column]) + offset`, of
    any number of parameters ({} for a constant angle).

    Raise ValueError, starting with `where`, for an angle that is not linear in the
    parameters of `columns`.
    """
    from qiskit.circuit import ParameterExpression

    if not isinstance(value, ParameterExpression) or not value.parameters:
        return {}, linear_angle(value, columns, where)[2]
    slopes = {}
    for param in value.parameters:
        if param not in columns:
            raise ValueError(f"{where}: parameter '{param.name}' is in neither inputs nor weights")
        slope = value.gradient(param)
        if isinstance(slope, ParameterExpression) and slope.parameters:
            raise ValueError(f"{where}: angle {value} is not of the form a*{param.name} + b")
        slopes[columns[param]] = _real(slope, where)
    offset = value.bind({param: 0.0 for param in value.parameters})
    return slopes, _real(offset, where)


def _real(value: Any, where: str) -> float:
    number = complex(value)
    if abs(number.imag) > _IMAG_TOL:
        raise ValueError(f"{where}: angle coefficient {number} is not real")
    return number.real
