"""Analyses behind the UIAT paper's figures (Dong et al., "The Enemy of My Enemy is My Friend:
Exploring Inverse Adversaries for Improving Adversarial Training", CVPR 2023,
arXiv:2211.00525), as functions that write files.

==============  =======================  ==================================================
kind            inputs                   what it writes
==============  =======================  ==================================================
strength        checkpoint(s)            Figures 1/4: accuracy of the small-/large-loss
                                         halves under PGD (eps > 0) and inverse PGD (eps < 0)
curves          run folder(s)            Figure 2: train/test natural and robust accuracy
                                         per epoch (robust overfitting)
tradeoff        run folders (a sweep)    Figure 3: natural vs robust accuracy per run
aa-diff         two checkpoints          Figure 5: AutoAttack accuracy A - B across eps
perturbations   run folder               Figure 6: the universal inverse perturbations z_c
sensitivity     run folders (sweeps)     Figure 7: natural and robust accuracy vs each
                                         swept hyper-parameter
timing          run folders              Table 2: seconds per training epoch per method
==============  =======================  ==================================================

One module per figure: :mod:`~robustrain.eval.figures.strength`,
:mod:`~robustrain.eval.figures.curves`, :mod:`~robustrain.eval.figures.sweeps` (tradeoff and
sensitivity, which share :func:`~robustrain.eval.figures.sweeps.sweep_points`),
:mod:`~robustrain.eval.figures.aa_diff`, :mod:`~robustrain.eval.figures.timing` and
:mod:`~robustrain.eval.figures.perturbations`; what they share (registry, arguments, output
paths, test images) is in ``_common``. The attack-based figures (strength, aa-diff) evaluate
under the strict fp32 context (:func:`robustrain.utils.runtime.fp32_eval`: eval mode, no
autocast, no TF32).

Registry ``ANALYSES``: each entry is ``analysis(inputs..., out=None, **options) -> list[Path]``;
it writes a PNG (matplotlib, the ``plot`` extra; ``perturbations`` needs none) and a JSON file
with exactly the plotted series (accuracies as fractions in [0, 1]; the figures show %),
and returns the paths written. Its registry metadata ``args`` lists its command-line
arguments (:class:`Arg`), from which ``robustrain analyze KIND`` is built.

Output paths (:func:`~robustrain.eval.figures._common.output_base`): ``out`` ending in
``.png``, ``.json`` or ``.md`` names the files (that suffix replaced for each); any other
``out`` is a folder receiving ``KIND.png``, ``KIND.json`` ...; the default is the run folder of
one run or checkpoint, else a ``figures/`` folder in the common parent folder of the inputs
(where a glob of the runs does not pick the analysis up). Every file is written atomically.

Example:
    >>> from robustrain.eval.figures._common import eps_grid, output_base
    >>> [round(e * 255, 6) for e in eps_grid(8 / 255, 5)]
    [-8.0, -4.0, 0.0, 4.0, 8.0]
    >>> output_base("figs/lam.png", "runs", "tradeoff").as_posix(), output_base(None, "runs", "tradeoff").as_posix()
    ('figs/lam', 'runs/tradeoff')
"""

from robustrain.eval.figures._common import ANALYSES, Analysis, Arg, analysis_description

# Each figure module registers its analysis in ANALYSES when imported; the order below is the
# registration order (the order of the table above, of `robustrain analyze --help` and of
# `robustrain list analyses`). Call an analysis through ANALYSES or import it from its module.
from robustrain.eval.figures import strength  # noqa: F401  isort: skip
from robustrain.eval.figures import curves  # noqa: F401  isort: skip
from robustrain.eval.figures import sweeps  # noqa: F401  isort: skip
from robustrain.eval.figures import aa_diff  # noqa: F401  isort: skip
from robustrain.eval.figures import timing  # noqa: F401  isort: skip
from robustrain.eval.figures import perturbations  # noqa: F401  isort: skip

__all__ = [
    "ANALYSES",
    "Analysis",
    "Arg",
    "analysis_description",
]
