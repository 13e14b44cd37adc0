"""CPnet: the Cellpose 3 residual U-Net with style injection (spec §1.1–1.5, §1.7).

The module tree is laid out so that ``state_dict()`` yields exactly the 313 keys, in the order, of an
upstream Cellpose 3 weight file::

    diam_mean, diam_labels,
    downsample.down.res_down_{0..3}.{conv.conv_{0..3}, proj}.*,
    upsample.up.res_up_{0..3}.{conv.conv_0, conv.conv_{1..3}.{conv,full}, proj}.*,
    output.*

Everything is plain float32 PyTorch (no MKLDNN layout conversion), so CPU results are float32-faithful.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CPnet", "DEFAULT_NBASE", "STYLE_CHANNELS", "random_cpnet"]

DEFAULT_NBASE: Tuple[int, ...] = (2, 32, 64, 128, 256)
STYLE_CHANNELS = 256
_BN_EPS = 1e-5
_BN_MOMENTUM = 0.05


def _batchnorm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with upstream's eps and momentum."""
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _brc(cin: int, cout: int, k: int) -> nn.Sequential:
    """BN(cin) → ReLU → Conv k×k (cin→cout), zero padding k//2; keys ``0.*`` (BN) and ``2.*`` (conv)."""
    return nn.Sequential(_batchnorm(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2))


def _bc(cin: int, cout: int) -> nn.Sequential:
    """BN(cin) → Conv 1×1 (cin→cout), no ReLU; keys ``0.*`` (BN) and ``1.*`` (conv)."""
    return nn.Sequential(_batchnorm(cin), nn.Conv2d(cin, cout, 1))


class _StyleConv(nn.Module):
    """BRC preceded by an additive style projection (and optional skip tensor).

    ``forward(z, s, skip=None)``: ``z (B, C, h, w)``, ``s (B, 256)``, ``skip (B, C, h, w)`` or None →
    ``(B, C, h, w)`` computed as ``BRC((z + skip) + (W s + b)[:, :, None, None])``.
    """

    def __init__(self, channels: int, sz: int, style_channels: int):
        super().__init__()
        self.conv = _brc(channels, channels, sz)
        self.full = nn.Linear(style_channels, channels)

    def forward(self, z: torch.Tensor, s: torch.Tensor, skip: torch.Tensor = None) -> torch.Tensor:
        if skip is not None:
            z = z + skip
        return self.conv(z + self.full(s)[:, :, None, None])


class _ResDown(nn.Module):
    """Residual down block ``RD(cin→cout)``: two residual pairs of 3×3 BRCs, the first with a 1×1 projection."""

    def __init__(self, cin: int, cout: int, sz: int):
        super().__init__()
        self.conv = nn.ModuleDict({f"conv_{i}": _brc(cin if i == 0 else cout, cout, sz) for i in range(4)})
        self.proj = _bc(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        r = self.proj(x) + c["conv_1"](c["conv_0"](x))
        return r + c["conv_3"](c["conv_2"](r))


class _ResUp(nn.Module):
    """Residual up block ``RU(cin→cout)`` with skip input and style injection in conv_1..conv_3."""

    def __init__(self, cin: int, cout: int, sz: int, style_channels: int):
        super().__init__()
        convs = {"conv_0": _brc(cin, cout, sz)}
        convs.update({f"conv_{i}": _StyleConv(cout, sz, style_channels) for i in (1, 2, 3)})
        self.conv = nn.ModuleDict(convs)
        self.proj = _bc(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        c = self.conv
        r = self.proj(x) + c["conv_1"](c["conv_0"](x), s, skip=skip)
        return r + c["conv_3"](c["conv_2"](r, s), s)


class _Downsample(nn.Module):
    """Encoder: ``down.res_down_i`` blocks separated by 2×2 max-pooling."""

    def __init__(self, nbase: Sequence[int], sz: int):
        super().__init__()
        self.down = nn.ModuleDict(
            {f"res_down_{i}": _ResDown(nbase[i], nbase[i + 1], sz) for i in range(len(nbase) - 1)})

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        downs = []
        for i, block in enumerate(self.down.values()):
            downs.append(block(x if i == 0 else F.max_pool2d(downs[-1], 2, 2)))
        return downs


class _Upsample(nn.Module):
    """Decoder: ``up.res_up_i`` blocks (applied from the deepest, i = n-1, to i = 0) with ×2 nearest upsampling."""

    def __init__(self, nbaseup: Sequence[int], sz: int, style_channels: int):
        super().__init__()
        self.up = nn.ModuleDict(
            {f"res_up_{i}": _ResUp(nbaseup[i + 1], nbaseup[i], sz, style_channels)
             for i in range(len(nbaseup) - 1)})

    def forward(self, s: torch.Tensor, downs: List[torch.Tensor]) -> torch.Tensor:
        blocks = list(self.up.values())
        x = blocks[-1](downs[-1], downs[-1], s)
        for i in range(len(blocks) - 2, -1, -1):
            x = blocks[i](F.interpolate(x, scale_factor=2, mode="nearest"), downs[i], s)
        return x


class CPnet(nn.Module):
    """The Cellpose 3 network (default 2D configuration, max-pooling).

    Parameters
    ----------
    nbase : sequence of int
        Channels per resolution level; ``nbase[0]`` is the number of input channels.
    nout : int
        Number of output maps (3: dY, dX, cell-probability logit).
    sz : int
        Kernel size of the large convolutions (padding ``sz // 2``).
    diam_mean : float
        Initial value of both ``diam_mean`` and ``diam_labels`` (parameters of shape (1,), float32,
        ``requires_grad=False``).

    Notes
    -----
    ``forward(x)`` takes ``x : Tensor (B, nbase[0], H, W) float32`` with H, W multiples of 8 and returns
    ``(out (B, nout, H, W) float32, style (B, nbase[-1]) float32 unit-norm, downs)`` where ``downs`` is the
    list of the encoder feature maps ``[D0 (B, nbase[1], H, W), ..., D3 (B, nbase[4], H/8, W/8)]``.
    """

    def __init__(self, *, nbase: Sequence[int] = DEFAULT_NBASE, nout: int = 3, sz: int = 3,
                 diam_mean: float = 30.0):
        super().__init__()
        nbase = tuple(int(n) for n in nbase)
        if len(nbase) < 2 or min(nbase) < 1 or nout < 1 or sz < 1 or sz % 2 == 0:
            raise ValueError(f"invalid CPnet configuration nbase={nbase}, nout={nout}, sz={sz}")
        self.nbase, self.nout, self.sz = nbase, int(nout), int(sz)
        nbaseup = nbase[1:] + nbase[-1:]
        self.diam_mean = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)
        self.diam_labels = nn.Parameter(torch.full((1,), float(diam_mean)), requires_grad=False)
        self.downsample = _Downsample(nbase, self.sz)
        self.upsample = _Upsample(nbaseup, self.sz, nbase[-1])
        self.output = _brc(nbaseup[0], self.nout, 1)

    @property
    def style_channels(self) -> int:
        """Length of the style vector (``nbase[-1]``)."""
        return self.nbase[-1]

    @staticmethod
    def style_of(deepest: torch.Tensor) -> torch.Tensor:
        """Unit-norm style vector ``(B, C) float32`` from the deepest feature map ``(B, C, h, w)``.

        Global average over the spatial axes (``avg_pool2d`` with a window of the whole map, as upstream pools),
        then ``unit_style``. The OpenVINO export pools with a mean instead, so that no shape is traced
        (``inference.prepared._TwoOutputs``); the two agree to float32 rounding.
        """
        kernel = [int(n) for n in deepest.shape[-2:]]
        return CPnet.unit_style(F.avg_pool2d(deepest, kernel_size=kernel).flatten(1))

    @staticmethod
    def unit_style(g: torch.Tensor) -> torch.Tensor:
        """``g (B, C) float32`` divided by its L2 norm per row (no epsilon, as upstream) → ``(B, C) float32``."""
        return g / torch.sum(g ** 2, dim=1, keepdim=True) ** 0.5

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        downs = self.downsample(x)
        style = self.style_of(downs[-1])
        out = self.output(self.upsample(style, downs))
        return out, style, downs

    @classmethod
    def from_state_dict(cls, state_dict, *, strict: bool = True) -> "CPnet":
        """Build a CPnet whose shape matches ``state_dict`` (nbase, nout, sz inferred) and load it.

        Parameters
        ----------
        state_dict : mapping str → Tensor
            An upstream-format CPnet state_dict (diam_* keys optional when ``strict`` is False).
        strict : bool
            Passed to ``load_state_dict``.

        Returns
        -------
        CPnet
            The loaded network, float32, on the CPU, in eval mode.
        """
        net = cls(**infer_config(state_dict))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()},
                            strict=strict)
        return net.eval()


def infer_config(state_dict) -> dict:
    """Return ``{"nbase", "nout", "sz"}`` of the CPnet that produced ``state_dict``.

    Raises
    ------
    KeyError
        When the encoder/output convolution keys are missing.
    """
    nbase = [state_dict["downsample.down.res_down_0.conv.conv_0.2.weight"].shape[1]]
    level = 0
    while f"downsample.down.res_down_{level}.conv.conv_0.2.weight" in state_dict:
        nbase.append(state_dict[f"downsample.down.res_down_{level}.conv.conv_0.2.weight"].shape[0])
        level += 1
    sz = state_dict["downsample.down.res_down_0.conv.conv_0.2.weight"].shape[-1]
    nout = state_dict["output.2.weight"].shape[0]
    return {"nbase": tuple(int(n) for n in nbase), "nout": int(nout), "sz": int(sz)}


def random_cpnet(*, seed: int = 0, diam_mean: float = 30.0, bn_mean_scale: float = 0.2) -> CPnet:
    """A seeded random full-size CPnet whose BatchNorm running statistics are moved away from 0 and 1.

    Used for parity tests and benchmarks: with the default statistics (mean 0, variance 1) BatchNorm in eval
    mode is nearly the identity, which would hide a wrong running-statistics path.

    Parameters
    ----------
    seed : int
        ``torch.manual_seed`` value.
    diam_mean : float
        Initial ``diam_mean`` and ``diam_labels``.
    bn_mean_scale : float
        Running means are N(0, bn_mean_scale²); running variances are U(0.5, 1.5).

    Returns
    -------
    CPnet
        In eval mode, float32, on the CPU.
    """
    torch.manual_seed(seed)
    net = CPnet(diam_mean=diam_mean)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * bn_mean_scale)
            elif name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
    return net.eval()

