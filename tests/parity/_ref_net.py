"""Helper run with the UPSTREAM reference interpreter (cellpose 3.1.1.3), as a black box.

Usage::

    python _ref_net.py build OUTDIR SEED
        # random upstream CPnet → OUTDIR/up_weights, x.npy, up_out.npy, up_style.npy
    python _ref_net.py load WEIGHTS X.npy OUTDIR
        # CellposeModel(pretrained_model=WEIGHTS) → OUTDIR/resaved (its state_dict), out.npy, style.npy, diams.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch


def _perturb_batchnorm(net, gen):
    """Move BN running stats away from 0/1: mean ~ N(0, 0.5), var ~ U(0.5, 2)."""
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 1.5 + 0.5)


def _forward(net, x):
    net.eval()
    with torch.no_grad():
        res = net(torch.from_numpy(x))
    return res[0].float().numpy(), res[1].float().numpy()


def build(outdir, seed):
    from cellpose.resnet_torch import CPnet

    torch.manual_seed(seed)
    net = CPnet([2, 32, 64, 128, 256], 3, 3, mkldnn=False)
    gen = torch.Generator().manual_seed(seed + 1)
    _perturb_batchnorm(net, gen)
    torch.save(net.state_dict(), outdir / "up_weights")
    x = np.random.default_rng(seed).normal(size=(2, 2, 64, 80)).astype(np.float32)
    np.save(outdir / "x.npy", x)
    out, style = _forward(net, x)
    np.save(outdir / "up_out.npy", out)
    np.save(outdir / "up_style.npy", style)


def load(weights, x_path, outdir):
    from cellpose import models

    model = models.CellposeModel(pretrained_model=str(weights), gpu=False)
    torch.save(model.net.state_dict(), outdir / "resaved")
    out, style = _forward(model.net, np.load(x_path))
    np.save(outdir / "out.npy", out)
    np.save(outdir / "style.npy", style)
    diams = {"diam_mean": float(model.diam_mean), "diam_labels": float(model.diam_labels)}
    (outdir / "diams.json").write_text(json.dumps(diams))


def main(argv):
    if argv[0] == "build":
        build(Path(argv[1]), int(argv[2]))
    elif argv[0] == "load":
        load(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
