"""robustrain: adversarial training (UIAT, LRAT and the baselines they compare with) and
honest robustness evaluation in PyTorch.

Contracts (see DESIGN.md): pixels in [0, 1]; attacks are pure functions returning detached
examples in the eps-ball ∩ [0, 1]; a training method is ``method(model, batch) ->
LossOutput(loss, logits, metrics)`` with its state in ``state_dict``; one trainer loop;
typed frozen configs; evaluation in fp32 and eval mode.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
