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
                    "CHECKPOINT-eval.json), with RobustBench's model_info field names. With --format safetensors "
                    "the weights go to OUT.safetensors (the format timm and Hugging Face ship in; needs "
                    "`pip install -e .[safetensors]`) beside the same card. `robustrain eval OUT.pt` (or "
                    "OUT.safetensors) reads it back.",
        epilog="Examples:\n  robustrain export runs/uiat-small_cnn-cifar10-mini-s0/best.pt models/uiat_small_cnn.pt\n"
               "  robustrain export runs/uiat-small_cnn-cifar10-mini-s0/best.pt models/uiat_small_cnn "
               "--format safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("checkpoint", help="a best.pt / last.pt written by `robustrain train`, or a run folder "
                                       "(its best.pt, else last.pt)")
    ex.add_argument("out", help="weights file to write, e.g. model.pt or model.safetensors (the card goes to "
                                "model.json); without a suffix it gets the format's")
    ex.add_argument("--format", dest="fmt", choices=["pt", "safetensors"], default=None,
                    help="weights file format (default: from OUT's suffix, else pt)")
    ex.add_argument("--no-ema", action="store_true", help="export the raw weights even when EMA weights exist")
    ex.add_argument("--name", default=None, help="model name in the card (default: METHOD-MODEL-DATASET)")
    ex.set_defaults(func=run)
    return ex


def run(args: argparse.Namespace) -> int:
    from robustrain.artifacts import export_model

    from robustrain.artifacts import checkpoint_file
    from robustrain.artifacts.weights_file import WEIGHT_FORMATS

    # a run folder exports its best.pt (last.pt without one); errors are RobustrainErrors (main prints them)
    weights, card_path = export_model(checkpoint_file(args.checkpoint), args.out, ema=not args.no_ema,
                                      name=args.name, fmt=args.fmt)
    card = json.loads(card_path.read_text())
    accs = ", ".join(f"{k} {v}%" for k, v in (("clean", card["clean_acc"]), ("AutoAttack", card["autoattack_acc"]))
                     if v is not None) or "no evaluation of these weights found beside the checkpoint"
    reader = WEIGHT_FORMATS[card["weights_format"]].reader
    print(f"wrote {weights} ({card['weights']} weights, epoch {card['epoch']}; read with {reader})")
    print(f"wrote {card_path} ({card['architecture']}, {card['dataset']}, {card['threat_model']} eps {card['eps']}; "
          f"{accs})")
    return 0
