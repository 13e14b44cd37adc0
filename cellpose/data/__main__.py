"""Command line of the synthetic data generator.

``python -m cellpose.data make --preset exemplar --out DIR [--channels nuclear|all] [--seed N] [--size Y X]
[--crop Y X] [--diameter LO HI] [--tile 256] [--compression zlib|none] [--workers N]`` writes
``DIR/<preset>.ome.tif`` (``<preset>_nuclear.ome.tif`` with ``--channels nuclear``) and ``DIR/<stem>_masks.tif``.
``python -m cellpose.data presets`` lists the presets.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from .ometiff import write_preset
from .presets import PRESETS

__all__ = ["build_parser", "main"]


def build_parser():
    """Argument parser with the ``make`` and ``presets`` sub-commands."""
    parser = argparse.ArgumentParser(prog="python -m cellpose.data",
                                     description="Synthetic CyCIF images with ground-truth nuclei.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="write a preset as a tiled OME-TIFF plus its labels")
    make.add_argument("--preset", default="exemplar", choices=sorted(PRESETS), help="image preset")
    make.add_argument("--out", required=True, help="output folder (created if missing)")
    make.add_argument("--channels", default="all", choices=("all", "nuclear"),
                      help="'nuclear' writes channel 0 (DNA_1) only, one plane")
    make.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    make.add_argument("--size", type=int, nargs=2, metavar=("Y", "X"), help="custom image size (a new scene)")
    make.add_argument("--crop", type=int, nargs=2, metavar=("Y", "X"), help="write only the top-left crop")
    make.add_argument("--diameter", type=float, nargs=2, metavar=("LO", "HI"), default=(10.0, 25.0),
                      help="nucleus diameter range in pixels")
    make.add_argument("--tile", type=int, default=256, help="TIFF tile edge (multiple of 16)")
    make.add_argument("--compression", default="zlib", choices=("zlib", "none"))
    make.add_argument("--workers", type=int, default=1,
                      help="processes rendering rows of tiles ahead (output identical for any value)")
    make.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub.add_parser("presets", help="list the presets")
    return parser


def main(argv=None):
    """Run the CLI; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "presets":
        for p in PRESETS.values():
            sys.stdout.write(f"{p.name:10s} C,Y,X = {p.shape}  {p.description}\n")
        return 0
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    try:
        image, labels = write_preset(args.preset, args.out, channels=args.channels, seed=args.seed,
                                     crop=args.crop, size=args.size, diameter=tuple(args.diameter),
                                     tile=args.tile, compression=args.compression,
                                     workers=args.workers)
    except ValueError as err:
        parser.error(str(err))
    sys.stdout.write(f"wrote {image} and {labels} in {time.perf_counter() - start:.1f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
