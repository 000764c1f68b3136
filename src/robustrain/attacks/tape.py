"""Record the adversaries one method call generates and hand the same ones to the next call.

AWP (Wu et al. 2020; :mod:`robustrain.train.awp`) generates the adversary once, at the weights
``w``, takes its weight-ascent step on the loss of that adversary, and trains at ``w + v`` on
the SAME adversary (official ``train_cifar10.py``: ``X_adv`` is computed before
``awp_adversary.calc_awp`` and reused for the training forward). Methods generate their
adversaries inside ``method(model, batch)``, so the trainer cannot pass ``x_adv`` in; instead
it runs the ascent call under :func:`recording` and the training call under :func:`replaying`:
every call of a :func:`taped` generator (:func:`~robustrain.attacks.pgd` and what is built on
it: FGSM, CW, the inverse adversaries, GAIRAT's geometry PGD) returns, in the replayed call, the
value it returned in the recorded one, in the same order, without running the attack again.
So AWP costs one extra forward/backward per step (the ascent), not one extra attack.

Only the outermost taped call is recorded (a taped generator that calls :func:`pgd` records one
entry), so nesting does not double-count. Outside both contexts a taped function is a plain
call. The state is per thread.

Example:
    >>> import torch
    >>> @taped
    ... def noisy(x):
    ...     return x + torch.randn_like(x)
    >>> x = torch.zeros(2)
    >>> with recording() as tape:
    ...     a = noisy(x)
    >>> with replaying(tape):
    ...     b = noisy(x)
    >>> torch.equal(a, b), len(tape)
    (True, 1)
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, TypeVar

import torch

__all__ = ["AdversaryTape", "TapeMismatchError", "recording", "replaying", "taped"]

F = TypeVar("F", bound=Callable[..., Any])


class TapeMismatchError(RuntimeError):
    """The replayed call asked for other adversaries than the recorded one generated."""


@dataclass
class AdversaryTape:
    """What one recorded call generated: ``(generator name, input shape, value)`` in call order."""

    entries: list[tuple[str, tuple[int, ...], Any]] = field(default_factory=list)
    cursor: int = 0

    def __len__(self) -> int:
        return len(self.entries)


class _State(threading.local):
    def __init__(self) -> None:
        self.mode: str | None = None  # "record" | "replay" | None
        self.tape: AdversaryTape | None = None
        self.depth = 0  # taped calls in progress (only depth 0 records / replays)


_STATE = _State()


def _input_shape(args: tuple[Any, ...]) -> tuple[int, ...]:
    # generators take (model, x, y, ...) or (x, ...): the first tensor argument is the input
    for a in args:
        if isinstance(a, torch.Tensor):
            return tuple(a.shape)
    return ()


def taped(fn: F) -> F:
    """Make ``fn`` (an adversary generator) recordable and replayable; a no-op otherwise."""
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = _STATE
        if state.mode is None:
            return fn(*args, **kwargs)
        tape, shape = state.tape, _input_shape(args)
        if state.mode == "replay":  # never nested: a replayed call does not run its body
            if tape.cursor >= len(tape.entries):
                raise TapeMismatchError(
                    f"{name} called {tape.cursor + 1} time(s) in the replayed step but the recorded one generated "
                    f"{len(tape.entries)} adversaries: the method must generate the same adversaries in both calls")
            rec_name, rec_shape, value = tape.entries[tape.cursor]
            if (rec_name, rec_shape) != (name, shape):
                raise TapeMismatchError(
                    f"replayed adversary {tape.cursor + 1} is {name} on {shape} but {rec_name} on {rec_shape} "
                    "was recorded: the method must generate the same adversaries in both calls")
            tape.cursor += 1
            return value
        state.depth += 1  # recording: only the outermost taped call makes an entry
        try:
            value = fn(*args, **kwargs)
        finally:
            state.depth -= 1
        if state.depth == 0:
            tape.entries.append((name, shape, value))
        return value

    return wrapper  # type: ignore[return-value]


@contextmanager
def _mode(mode: str, tape: AdversaryTape) -> Iterator[AdversaryTape]:
    state = _STATE
    if state.mode is not None:
        raise RuntimeError(f"adversary tape: cannot start {mode} inside {state.mode}")
    state.mode, state.tape, state.depth = mode, tape, 0
    try:
        yield tape
    finally:
        state.mode, state.tape, state.depth = None, None, 0


@contextmanager
def recording() -> Iterator[AdversaryTape]:
    """Record every outermost taped call made inside the block into a new tape."""
    with _mode("record", AdversaryTape()) as tape:
        yield tape


@contextmanager
def replaying(tape: AdversaryTape) -> Iterator[AdversaryTape]:
    """Answer taped calls from ``tape``, in order; every recorded entry must be used."""
    tape.cursor = 0
    with _mode("replay", tape):
        yield tape
        if tape.cursor != len(tape.entries):
            raise TapeMismatchError(
                f"the replayed step used {tape.cursor} of the {len(tape.entries)} recorded adversaries: the method "
                "must generate the same adversaries in both calls")
