"""Write the bundled model's int8 activation ranges into ``cellpose/models/int8_ranges.json``.

Usage: ``.venv/bin/python scripts/int8_ranges.py [--bsize PX] [--out PATH]``

Run it after the bundled model or the int8 recipe (``cellpose.inference.int8.RECIPE``) changes; without it
``--precision int8`` still works, but the first build on each machine calibrates (5.2 s at 224², AMD EPYC,
flags avx2 avx512f avx512_bf16 avx512_vnni, 2 cores). ``tests/test_int8_ranges.py`` recalibrates and checks
that the shipped entry still matches.
"""
from __future__ import annotations

import argparse
import logging

import torch

from cellpose.config import TilingOptions
from cellpose.inference import int8, int8_ranges
from cellpose.inference.prepared import import_openvino, openvino_config, openvino_model
from cellpose.models import CellposeModel
from cellpose.net.weights import DEFAULT_BUNDLED_MODEL


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bsize", type=int, default=TilingOptions().bsize, help="tile size in pixels")
    p.add_argument("--out", default=None, help="ranges file (default: the shipped one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ov = import_openvino()
    net = CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL).net
    x = torch.zeros((4, net.nbase[0], args.bsize, args.bsize))
    marker = int8.uses_second_channel(net)
    model = openvino_model(net, x)
    lo, hi = int8.calibrate(model, ov, batch=4, marker=marker, config=openvino_config("fp32"))
    key = int8_ranges.ranges_key(net, x.shape, marker=marker)
    info = {"model": DEFAULT_BUNDLED_MODEL, "tile": list(x.shape[1:]), "marker": marker, "recipe": int8.RECIPE}
    path = int8_ranges.write_shipped(key, lo, hi, int8.convolution_shapes(model), info=info, path=args.out)
    logging.info("wrote %d ranges under %s to %s", len(lo), key, path)


if __name__ == "__main__":
    main()
