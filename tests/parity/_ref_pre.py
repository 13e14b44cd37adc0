"""Reference side of the pre-processing / tiling parity tests; run with the upstream interpreter.

Usage: ``python _ref_pre.py CASES.json INPUTS.npz OUTPUTS.npz``. Every case names an upstream function
(called as a black box), the input arrays and keyword arguments; its results are saved under
``<case id>/<name>``. ``StubNet`` is imported by the test side too, so both run the same network.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch


class StubNet(torch.nn.Module):
    """Deterministic, element-wise stand-in for CPnet (no reductions whose order could depend on threads).

    ``out[c] = w[c, 0] * x0 + w[c, 1] * x1 + b[c] + r[c, 0] * y / h + r[c, 1] * x / w`` (the ramps make the
    output depend on the position inside the tile, so tile flips matter); style = unit-norm of the first
    16 x 16 pixels of channel 0 plus 1.5.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)
        for name, shape in (("w", (3, 2)), ("b", (3,)), ("r", (3, 2))):
            self.register_buffer(name, torch.from_numpy(rng.normal(size=shape).astype(np.float32)))
        self.nout = 3
        self.mkldnn = False
        self.dtype = torch.float32

    @property
    def device(self):
        """Device of the buffers (upstream's run_net asks for it)."""
        return self.w.device

    def forward(self, x):
        """x (B, 2, h, w) float32 → (out (B, 3, h, w), style (B, 256))."""
        B, _, h, w = x.shape
        yy = (torch.arange(h, dtype=torch.float32) / h)[:, None]
        xx = (torch.arange(w, dtype=torch.float32) / w)[None, :]
        outs = [x[:, 0] * self.w[c, 0] + x[:, 1] * self.w[c, 1] + self.b[c] + self.r[c, 0] * yy + self.r[c, 1] * xx
                for c in range(3)]
        s = x[:, 0, :16, :16].reshape(B, 256) + 1.5
        s = s / (s ** 2).sum(dim=1, keepdim=True) ** 0.5
        return torch.stack(outs, dim=1), s


def _normalize(t, core, arrays, kw):
    if kw.get("lowhigh") is not None:
        kw = dict(kw, lowhigh=np.asarray(kw["lowhigh"], dtype=np.float64))
    return {"out": t.normalize_img(arrays["img"].copy(), **kw)}


def _tile_norm(t, core, arrays, kw):
    img = arrays["img"]
    return {"out": np.stack([t.normalize99_tile(img[:, :, c].copy(), **kw) for c in range(img.shape[2])], axis=2)}


def _convert(t, core, arrays, kw):
    return {"out": t.convert_image(arrays["img"], **kw)}


def _resize(t, core, arrays, kw):
    return {"out": t.resize_image(arrays["img"], **kw)}


def _pad(t, core, arrays, kw):
    padded, ysub, xsub = t.pad_image_ND(arrays["img"])
    return {"shape": np.array(padded.shape), "ysub": np.asarray(ysub), "xsub": np.asarray(xsub),
            "padded": padded}


def _tiles(t, core, arrays, kw):
    IMG, ysub, xsub, Ly, Lx = t.make_tiles(arrays["img"], **kw)
    return {"IMG": IMG, "ysub": np.asarray(ysub), "xsub": np.asarray(xsub), "size": np.array([Ly, Lx])}


def _taper(t, core, arrays, kw):
    return {"out": t._taper_mask(**kw)}


def _average(t, core, arrays, kw):
    return {"out": t.average_tiles(arrays["y"], arrays["ysub"], arrays["xsub"], **kw)}


def _run_net(t, core, arrays, kw):
    y, style = core.run_net(StubNet().eval(), arrays["img"][np.newaxis], **kw)
    return {"y": y[0], "style": style[0]}


_OPS = {"normalize": _normalize, "tile_norm": _tile_norm, "convert": _convert, "resize": _resize, "pad": _pad,
        "tiles": _tiles, "taper": _taper, "average": _average, "run_net": _run_net}


def main(cases_path: str, inputs_path: str, outputs_path: str) -> None:
    """Run every case of ``cases_path`` on the arrays of ``inputs_path`` and save the results."""
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    from cellpose import core, transforms

    with open(cases_path) as fh:
        cases = json.load(fh)
    inputs = np.load(inputs_path)
    results = {}
    for case in cases:
        arrays = {name: inputs[key] for name, key in case["arrays"].items()}
        for name, value in _OPS[case["op"]](transforms, core, arrays, case.get("kwargs", {})).items():
            results[f"{case['id']}/{name}"] = np.asarray(value)
    np.savez(outputs_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:4])
