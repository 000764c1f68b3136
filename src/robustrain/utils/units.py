"""Pixel units: numbers written as fractions (``8/255``) in, and eps-like values written back out.

Every budget and step size in robustrain is in pixel units of [0, 1] images, and users write
them as fractions of 255. :func:`parse_number` reads ``"8/255"`` (configs, ``--eps``);
:func:`format_eps` writes a value back as ``k/255`` when it is one, for tables, model cards and
``robustrain list``. Only eps-like values are written that way (:func:`is_eps_like`): a fraction
such as ``rho = 0.2`` stays a decimal.

Every number read this way is finite: ``nan``, ``inf``, ``-inf`` and overflowing literals such
as ``1e999`` are refused with the key's name, so no NaN reaches a learning rate or a budget.

Example:
    >>> parse_number("8/255") == 8 / 255, format_eps(8 / 255), format_eps(0.5), format_eps(0.2)
    (True, '8/255', '0.5', '51/255')
    >>> is_eps_like("alpha_inv"), is_eps_like("rho")
    (True, False)
    >>> parse_number("nan", "optim.lr")
    Traceback (most recent call last):
    ...
    robustrain.utils.errors.ConfigError: optim.lr must be a finite number, got 'nan'; write a number such as 0.1 or 8/255
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from robustrain.utils.checks import short_repr
from robustrain.utils.errors import ConfigError

__all__ = ["format_eps", "format_value", "is_eps_like", "parse_number"]

_FRACTION = re.compile(r"^\s*[-+]?\d+(\.\d*)?\s*/\s*\d+(\.\d*)?\s*$")


def parse_number(value: Any, key: str = "value") -> float:
    """A finite float from a number or a string such as ``"0.03"`` or ``"8/255"``.

    Raises:
        ConfigError: not a number, or not finite (NaN, +-inf, ``1e999``); the message names ``key``.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {short_repr(value)}")
    number: float | None = None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
    elif isinstance(value, str) and len(value) <= 100:
        s = value.strip()
        try:
            if _FRACTION.match(s):
                num, den = s.split("/")
                number = float(Fraction(num.strip()) / Fraction(den.strip()))
            else:
                number = float(s)
        except (ValueError, ZeroDivisionError, OverflowError):
            number = None
    if number is None:
        raise ConfigError(f"{key}: expected a number such as 0.1 or 8/255, got {short_repr(value)}")
    if not math.isfinite(number):
        raise ConfigError(f"{key} must be a finite number, got {short_repr(value)}; "
                          "write a number such as 0.1 or 8/255")
    return number


def format_eps(value: float) -> str:
    """``k/255`` for a value in (0, 1) that is a whole number of 255ths, else ``f"{value:g}"``."""
    k = value * 255
    if 0 < abs(value) < 1 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{value:g}"


def is_eps_like(name: str) -> bool:
    """Whether a parameter named ``name`` is a pixel budget or step (``eps``, ``alpha``, ``eps_inv``,
    ``alpha_universal`` ...), written as ``k/255``."""
    return name.split("_")[0] in ("eps", "alpha")


def format_value(name: str, value: object) -> str:
    """A default as a user writes it: eps-like floats as ``k/255``, everything else as is."""
    if isinstance(value, float) and is_eps_like(name):
        return format_eps(value)
    return str(value)
