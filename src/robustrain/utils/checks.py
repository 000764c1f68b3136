"""Small validators shared by attack, method and schedule hyper-parameter dataclasses.

They raise ``ValueError`` (never ``assert``: asserts vanish under ``python -O``) with the
offending name and value, so a bad config fails before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "check_choice",
    "check_field_types",
    "check_in_range",
    "check_keys",
    "check_nonnegative",
    "check_positive",
]


def check_nonnegative(name: str, value: float) -> None:
    """``value`` must be a finite number >= 0."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive(name: str, value: float) -> None:
    """``value`` must be a finite number > 0."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_in_range(name: str, value: float, low: float, high: float) -> None:
    """``low <= value <= high``."""
    if not (low <= value <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """``value`` must be one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_keys(what: str, given: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Every key of ``given`` must be in ``valid``; the error names the valid keys."""
    valid = tuple(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown {what} parameter(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(valid) if valid else '(none)'}"
        )


def check_field_types(obj: Any) -> None:
    """Check a dataclass instance's scalar fields against their annotations.

    ``int`` values are accepted (and stored as ``float``) for ``float`` fields, as in YAML
    ``eps: 0`` ; ``bool`` is never accepted as a number (``True`` is an ``int`` in Python).
    Fields annotated with anything but float/int/str/bool are left alone.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        expected = hints.get(f.name)
        value = getattr(obj, f.name)
        if expected is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a float, got {value!r}")
            # frozen dataclass: normalise 8 -> 8.0 so equality/serialisation is stable
            object.__setattr__(obj, f.name, float(value))
        elif expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{f.name} must be an int, got {value!r}")
        elif expected in (str, bool):
            if not isinstance(value, expected):
                raise ValueError(f"{f.name} must be a {expected.__name__}, got {value!r}")
