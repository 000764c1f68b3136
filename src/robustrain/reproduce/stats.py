"""The statistics of a reproduction table, written once: mean ± sample std over seeds and the
paired difference of two rows over the same seeds with a 95% Student-t interval.

Pure functions on plain lists of floats (no numpy / scipy: the t quantiles come from a table,
:data:`T975`, exact to 9 digits for 1-30 degrees of freedom, and a 4-term Cornish-Fisher
expansion beyond, within 1e-5 of the exact value).

* :func:`mean_std`: mean and sample standard deviation (n - 1);
* :func:`t_quantile_975`: the 0.975 quantile of Student's t with ``df`` degrees of freedom;
* :func:`paired_difference`: ``a - b`` seed by seed: mean, half-width ``t_{0.975, n-1} * sd / sqrt(n)``
  of the 95% interval, and n; one pair gives no interval.

Example (two methods, three seeds; differences 2, 4, 3 -> mean 3, sd 1, half-width
t_{0.975, 2} / sqrt(3) = 4.3027 / 1.7321 = 2.4841):

    >>> mean_std([50.0, 52.0, 54.0])
    (52.0, 2.0)
    >>> m, h, n = paired_difference([52.0, 55.0, 54.0], [50.0, 51.0, 51.0])
    >>> m, round(h, 4), n
    (3.0, 2.4841, 3)
    >>> paired_difference([52.0], [50.0])
    (2.0, None, 1)
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["T975", "mean_std", "t_quantile_975", "paired_difference"]

#: the 0.975 quantile of Student's t for 1..30 degrees of freedom (index = df - 1)
T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836,
    2.446911851, 2.364624252, 2.306004135, 2.262157163, 2.228138852,
    2.200985160, 2.178812830, 2.160368656, 2.144786688, 2.131449546,
    2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447,
    2.079613845, 2.073873068, 2.068657610, 2.063898562, 2.059538553,
    2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)
#: the 0.975 quantile of the standard normal
Z975 = 1.959963984540054


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1 in the denominator) of ``values``.

    The std is None for a single value (one seed says nothing about the spread).

    Raises:
        ValueError: ``values`` is empty.

    Example:
        >>> mean_std([1.0, 3.0])
        (2.0, 1.4142135623730951)
        >>> mean_std([5.0])
        (5.0, None)
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_std needs at least one value")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t distribution with ``df`` degrees of freedom (the
    multiplier of a two-sided 95% interval).

    df 1..30 from :data:`T975`; larger df from the Cornish-Fisher expansion around the normal
    quantile (error < 1e-5 for df > 30).

    Raises:
        ValueError: ``df`` < 1.

    Example:
        >>> t_quantile_975(1), t_quantile_975(2), round(t_quantile_975(1000), 4)
        (12.706204736, 4.30265273, 1.9623)
    """
    if isinstance(df, bool) or int(df) != df or df < 1:
        raise ValueError(f"degrees of freedom must be an integer >= 1, got {df!r}")
    df = int(df)
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3)
            + (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / (92160 * df ** 4))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float | None, int]:
    """The paired difference ``a - b`` (``a[i]`` and ``b[i]`` measured on the same seed) with
    its 95% Student-t interval.

    With ``d_i = a_i - b_i`` over n pairs: ``mean = mean(d)``, and for n >= 2
    ``half_width = t_{0.975, n-1} * sd(d) / sqrt(n)`` (sd the sample std), so the interval is
    ``mean ± half_width``. Pairing removes what two rows share per seed (data order,
    initialisation), which is why it is tighter than comparing two means ± std.

    Returns:
        ``(mean, half_width, n)``; ``half_width`` is None for n = 1 (no interval from one pair).

    Raises:
        ValueError: ``a`` and ``b`` differ in length or are empty.

    Example:
        >>> paired_difference([1.0, 2.0], [0.0, 0.0])  # d = 1, 2: sd 0.7071, t_{.975,1} = 12.706
        (1.5, 6.353102368, 2)
    """
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs pairs: {len(a)} values against {len(b)}")
    if not a:
        raise ValueError("paired_difference needs at least one pair")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean, sd = mean_std(d)
    n = len(d)
    if sd is None:
        return mean, None, n
    return mean, t_quantile_975(n - 1) * sd / math.sqrt(n), n
