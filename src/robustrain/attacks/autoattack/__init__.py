"""AutoAttack through the official package (``pyautoattack``), as a thin adapter.

Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020, arXiv:2003.01690. Nothing of the package is
vendored; this module only fixes the protocol around it:

- versions ``standard`` (APGD-CE, APGD-T, FAB-T, Square; the RobustBench protocol), ``plus``,
  ``rand`` (EOT for randomised defences) and ``custom`` (any list of the package's attacks);
- threat models ``Linf`` (default eps 8/255) and ``L2`` (default eps 0.5);
- always fp32 and eval mode, a fixed seed (the global RNG is restored afterwards);
- the package's sanity checks (randomised / dynamic defence, probabilities instead of logits,
  zero gradients, too many target classes, Square beating the gradient attacks) are captured
  as *flags* and returned, never lost in a log; the adapter adds its own checks (adversarial
  examples outside the eps-ball or [0, 1], predictions that change when re-evaluated);
- long runs are resumable: the images are attacked in chunks and a small JSON state of the
  finished chunks (:class:`~robustrain.attacks.autoattack.state.ChunkState`) is written
  atomically into ``state_dir`` after each one, keyed by a fingerprint of the settings, the
  data and the weights, so rerunning the same evaluation continues where it stopped (and a
  state of another model or setting is never reused): :func:`run_autoattack` is "for each
  chunk: skip if done, attack, record". pyautoattack's own ``state_path`` is not used: in
  version 0.2.0 it writes the attack set as a string, so a restored state never matches and
  raises;
- the package's verbose output goes to ``log_path`` (or nowhere); ``verbose=True`` also
  prints it.

A robust example is one whose clean prediction is right, that every attack of the version
failed on, and whose returned adversarial example is still classified correctly when
re-evaluated here.

Modules, bottom to top (each imports only those above it in this list):

- :mod:`.protocol`: the names (versions, attacks, threat models), their checks
  (:class:`~.protocol.SpecFields`) and the import of the package;
- :mod:`.results`: :class:`AutoAttackResult`;
- :mod:`.state`: the resume state of a chunked run (:class:`~.state.ChunkState`);
- :mod:`.flags`: capture of the package's sanity flags, prints and warnings;
- :mod:`.chunk`: building the package's attack and attacking one chunk;
- :mod:`.run`: :func:`run_autoattack` and :func:`autoattack`;
- :mod:`.spec`: :class:`AutoAttackSpec` (callable, with :meth:`~AutoAttackSpec.evaluate`) and
  :func:`parse_autoattack_name`.

Example:
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
    >>> x, y = torch.rand(6, 3, 4, 4), torch.randint(0, 10, (6,))
    >>> parse_autoattack_name("aa:apgd-ce+apgd-t").attacks
    ('apgd-ce', 'apgd-t')
    >>> quick = AutoAttackSpec("custom", ("apgd-ce",), options={"apgd.n_restarts": 1, "apgd.n_iter": 10})
    >>> res = quick.evaluate(net, x, y, progress=False)
    >>> 0.0 <= res.accuracy <= res.clean_accuracy <= 1.0
    True
"""

from robustrain.attacks.autoattack.protocol import (
    AA_ATTACKS,
    AA_NORMS,
    AA_VERSIONS,
    canonical_norm,
    default_eps,
    require_pyautoattack,
)
from robustrain.attacks.autoattack.results import AutoAttackResult
from robustrain.attacks.autoattack.run import autoattack, run_autoattack
from robustrain.attacks.autoattack.spec import AutoAttackSpec, parse_autoattack_name

__all__ = [
    "AA_ATTACKS",
    "AA_NORMS",
    "AA_VERSIONS",
    "AutoAttackResult",
    "AutoAttackSpec",
    "autoattack",
    "canonical_norm",
    "default_eps",
    "parse_autoattack_name",
    "require_pyautoattack",
    "run_autoattack",
]
