"""Small validators shared by attack, method and schedule hyper-parameter dataclasses.

They raise ``ValueError`` (never ``assert``: asserts vanish under ``python -O``) with the
offending name, the allowed range and the value, so a bad config fails before anything runs.
Every number check refuses NaN and infinities. Pixel budgets and step sizes are in pixel units
of [0, 1] images (:func:`check_budget`, :func:`check_step`). Messages stay one short line:
values are shown through :func:`short_repr`, and :func:`one_line` caps a whole message.

Example:
    >>> check_budget("eps", 8 / 255)
    >>> check_budget("eps", 2.0)
    Traceback (most recent call last):
    ...
    ValueError: eps must lie in [0, 1] (a pixel budget of [0, 1] images, e.g. 8/255), got 2.0
    >>> check_step("alpha", 0.0)
    Traceback (most recent call last):
    ...
    ValueError: alpha must lie in (0, 1] (a step size in pixels of [0, 1] images, e.g. 2/255), got 0.0
    >>> one_line("x" * 1000, limit=40)
    'xxxxxxxxxxxxxx... (1000 characters)'
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MESSAGE_LIMIT",
    "check_budget",
    "check_choice",
    "check_finite",
    "check_field_types",
    "check_in_range",
    "check_keys",
    "check_nonnegative",
    "check_positive",
    "check_step",
    "one_line",
    "short_repr",
]

#: the longest error message (characters) :func:`one_line` lets through
MESSAGE_LIMIT = 300


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a 3 MB value is never echoed whole)."""
    if isinstance(value, (list, tuple, dict, set)) and len(value) > limit:
        return f"<{type(value).__name__} of {len(value)} items>"
    try:
        text = repr(value)
    except RecursionError:  # a self-referencing structure from a YAML alias
        return f"<recursive {type(value).__name__}>"
    except ValueError:  # an int too long to print (sys.set_int_max_str_digits)
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """``message`` as one line (line breaks joined by spaces) of at most ``limit`` characters."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    if len(line) <= limit:
        return line
    tail = f"... ({len(line)} characters)"
    return line[: max(limit - len(tail), 0)] + tail


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""


def check_finite(name: str, value: float) -> None:
    """``value`` must be a finite number (not NaN, not +-inf)."""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {short_repr(value)}")


def check_nonnegative(name: str, value: float, hint: str = "") -> None:
    """``value`` must be a finite number >= 0 (``hint``: what it means, shown in the message)."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0{_hint(hint)}, got {short_repr(value)}")


def check_int(name: str, value: Any, low: int = 1, hint: str = "") -> int:
    """``value`` must be an integer >= ``low``; ``bool`` is not one here (``batch_size=True``
    is a mistake, not 1). The one home of this rule (issue 22).

    Example:
        >>> check_int("steps", 10)
        10
        >>> try:
        ...     check_int("batch_size", True)
        ... except ValueError as e:
        ...     print(e)
        batch_size must be an integer >= 1, got True
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{_hint(hint)}, got {short_repr(value, 40)}")
    return value


def check_positive(name: str, value: float, hint: str = "") -> None:
    """``value`` must be a finite number > 0."""
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0{_hint(hint)}, got {short_repr(value)}")


def check_in_range(
    name: str, value: float, low: float, high: float, hint: str = "", *,
    low_open: bool = False, high_open: bool = False,
) -> None:
    """``low <= value <= high`` (``<`` at an open end); NaN never passes."""
    ok = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}{_hint(hint)}, got {short_repr(value)}")


def check_budget(name: str, value: float) -> None:
    """A perturbation budget (radius) in pixel units of [0, 1] images: ``0 <= value <= 1``."""
    check_in_range(name, value, 0.0, 1.0, "a pixel budget of [0, 1] images, e.g. 8/255")


def check_step(name: str, value: float) -> None:
    """An attack step size in pixel units of [0, 1] images: ``0 < value <= 1``."""
    check_in_range(name, value, 0.0, 1.0, "a step size in pixels of [0, 1] images, e.g. 2/255", low_open=True)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """``value`` must be one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {short_repr(value)}")


def check_keys(what: str, given: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Every key of ``given`` must be in ``valid``; the error names the valid keys."""
    valid = tuple(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown {what} parameter(s) {', '.join(short_repr(u) for u in unknown[:5])}; "
            f"valid: {', '.join(valid) if valid else '(none)'}"
        )


def check_field_types(obj: Any) -> None:
    """Check a dataclass instance's scalar fields against their annotations.

    ``int`` values are accepted (and stored as ``float``) for ``float`` fields, as in YAML
    ``eps: 0`` ; ``bool`` is never accepted as a number (``True`` is an ``int`` in Python), and
    a ``float`` field never holds NaN or an infinity.
    Fields annotated with anything but float/int/str/bool are left alone.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        expected = hints.get(f.name)
        value = getattr(obj, f.name)
        if expected is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a float, got {short_repr(value)}")
            check_finite(f.name, value)
            # frozen dataclass: normalise 8 -> 8.0 so equality/serialisation is stable
            object.__setattr__(obj, f.name, float(value))
        elif expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{f.name} must be an int, got {short_repr(value)}")
        elif expected in (str, bool):
            if not isinstance(value, expected):
                raise ValueError(f"{f.name} must be a {expected.__name__}, got {short_repr(value)}")
