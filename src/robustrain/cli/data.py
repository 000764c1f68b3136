"""``robustrain data shard SRC OUT``: write an image folder as WebDataset tar shards with a
manifest (:func:`robustrain.data.streaming.write_shards`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    data = sub.add_parser("data", help="prepare datasets: write an image folder as WebDataset tar shards",
                          description="Dataset preparation commands.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    shard = actions.add_parser(
        "shard", help="write an image folder (ImageNet or TinyImageNet layout) as tar shards + manifest.json",
        description="Write SRC/train (and SRC/val when present) as WebDataset tar shards in OUT/train and OUT/val: "
                    "per sample KEY.jpg|png (the file's bytes, unchanged), KEY.cls (label) and KEY.idx (global id), "
                    "in global-id order (classes sorted by folder name, files sorted within a class), so training on "
                    "the shards gives the same batches as on the folder. OUT/manifest.json records the classes and, "
                    "per split, the image count, the data.root pattern and each shard's count and sha256.",
        epilog="Example:\n  robustrain data shard /data/imagenet /data/imagenet-shards --shard-size 1000\n"
               "  robustrain train data.name=webdataset "
               "data.root='/data/imagenet-shards/train/shard-{000000..001281}.tar'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shard.add_argument("src", help="image folder with train/<class>/* (and val/)")
    shard.add_argument("out", help="output folder (must not hold shards already)")
    shard.add_argument("--shard-size", type=int, default=1000, help="images per shard (default 1000)")
    shard.add_argument("--quiet", action="store_true", help="no progress line per shard")
    data.set_defaults(func=run)
    return data


def run(args: argparse.Namespace) -> int:
    from robustrain.data.streaming import write_shards
    from robustrain.utils.errors import UsageError

    if args.shard_size < 1:
        raise UsageError(f"--shard-size must be >= 1 (images per shard), got {args.shard_size}")
    # errors are RobustrainErrors (one line, printed by main); nothing is decoded, the bytes are copied
    manifest = write_shards(args.src, args.out, shard_size=args.shard_size,
                            progress=None if args.quiet else lambda line: print(line, flush=True))
    for split, entry in manifest["splits"].items():
        print(f"wrote {entry['count']} {split} images in {len(entry['shards'])} shard(s): "
              f"{args.out}/{entry['pattern']}")
    print(f"wrote {args.out}/manifest.json ({len(manifest['classes'])} classes); train with:\n"
          f"  robustrain train data.name=webdataset data.root='{args.out}/{manifest['splits']['train']['pattern']}'")
    return 0
