"""Adversarial (and inverse-adversarial) attacks on models taking pixels in [0, 1].

Functional API (pure functions)::

    x_adv = pgd(model, x, y, eps=8/255, alpha=2/255, steps=10)          # Linf PGD-10
    x_inv = pgd(model, x, y, eps=4/255, alpha=2/255, steps=5, descend=True, start="normal")
    x_adv = cw_inf(model, x, y)                                           # CW-inf, 30 steps

Adaptive attacks (Athalye et al. 2018) for defences that obfuscate gradients::

    x_adv = eot_pgd(model, x, y, eps=8/255, alpha=2/255, steps=20, samples=16)   # randomized model
    x_adv = pgd(BPDA(net, quantise), x, y, eps=8/255, alpha=2/255, steps=20)     # non-differentiable input step

Config objects (frozen dataclasses, ``attack(model, x, y)``) and the registry::

    attack = create_attack("pgd20")          # names: ATTACKS.names()

Every attack returns a detached tensor inside the eps-ball ∩ [0, 1], restores the model's
train/eval flags exactly and takes an explicit ``bn_mode`` (see :func:`bn_mode`).

AutoAttack (the official ``pyautoattack`` package) is reached through :mod:`~robustrain.attacks.autoattack`:
the attack-name grammar (``aa``, ``aa-plus``, ``aa:apgd-ce+apgd-t``) that configs validate, and
:func:`run_autoattack`, which runs it in chunks that survive an interruption.
"""

from robustrain.attacks.autoattack import AutoAttackResult, AutoAttackSpec, parse_autoattack_name, run_autoattack
from robustrain.attacks.bn import bn_mode
from robustrain.attacks.bpda import BPDA
from robustrain.attacks.eot import eot_pgd
from robustrain.attacks.functional import ce_loss, cw_inf, fgsm, margin_loss, neg_margin_loss, pgd
from robustrain.attacks.objects import ATTACKS, CW, EOTPGD, FGSM, PGD, Inverse, create_attack

__all__ = [
    "ATTACKS",
    "AutoAttackResult",
    "AutoAttackSpec",
    "BPDA",
    "CW",
    "EOTPGD",
    "FGSM",
    "Inverse",
    "PGD",
    "bn_mode",
    "ce_loss",
    "create_attack",
    "cw_inf",
    "eot_pgd",
    "fgsm",
    "margin_loss",
    "neg_margin_loss",
    "parse_autoattack_name",
    "pgd",
    "run_autoattack",
]
