"""``robustrain export CHECKPOINT OUT``: plain weights + a RobustBench-style card
(:func:`robustrain.artifacts.export_model`)."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ex = sub.add_parser(
        "export", help="write a checkpoint's weights as a plain state_dict plus a RobustBench-style JSON card",
        description="Write OUT.pt, the state_dict of the whole [0,1]-input model (normalisation included; EMA "
                    "weights when the run kept them), readable with torch.load(OUT.pt, weights_only=True), and "
                    "OUT.json: architecture and its parameters, dataset, class count, mean/std, threat model, eps, "
                    "method, epoch, and the accuracies of these weights found beside the checkpoint (summary.json, "
                    "CHECKPOINT-eval.json), with RobustBench's model_info field names. `robustrain eval OUT.pt` "
                    "reads it back.",
        epilog="Example:\n  robustrain export runs/uiat-small_cnn-cifar10-mini-s0/best.pt models/uiat_small_cnn.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("checkpoint", help="a best.pt / last.pt written by `robustrain train`, or a run folder "
                                       "(its best.pt, else last.pt)")
    ex.add_argument("out", help="weights file to write, e.g. model.pt (the card goes to model.json)")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even when EMA weights exist")
    ex.add_argument("--name", default=None, help="model name in the card (default: METHOD-MODEL-DATASET)")
    ex.set_defaults(func=run)
    return ex


def run(args: argparse.Namespace) -> int:
    from robustrain.artifacts import export_model

    from robustrain.artifacts import checkpoint_file

    # a run folder exports its best.pt (last.pt without one); errors are RobustrainErrors (main prints them)
    weights, card_path = export_model(checkpoint_file(args.checkpoint), args.out, ema=not args.no_ema,
                                      name=args.name)
    card = json.loads(card_path.read_text())
    accs = ", ".join(f"{k} {v}%" for k, v in (("clean", card["clean_acc"]), ("AutoAttack", card["autoattack_acc"]))
                     if v is not None) or "no evaluation of these weights found beside the checkpoint"
    print(f"wrote {weights} ({card['weights']} weights, epoch {card['epoch']}; read with "
          f"torch.load(..., weights_only=True))")
    print(f"wrote {card_path} ({card['architecture']}, {card['dataset']}, {card['threat_model']} eps {card['eps']}; "
          f"{accs})")
    return 0
