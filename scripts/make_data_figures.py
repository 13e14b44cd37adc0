"""Make the figures of ``docs/data.md`` ("What the nuclei look like") from the synthetic generator.

Usage: ``.venv/bin/python scripts/make_data_figures.py [--out docs/img]``

Deterministic (fixed seeds; PNGs without timestamps). Needs Pillow (installed with matplotlib,
``pip install 'cellpose-tb[bench]'``). Writes ``data_<property>.png``: 8-bit grayscale crops of the DNA
channel, each stretched to its own 0.5-99.7 percentiles unless the caption says otherwise, with a caption above.
Takes about 5 s on one core.
"""
from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cellpose.data import Scene, cells, generator, sets
from cellpose.data.cells import (COL_A, COL_B, COL_BRIGHT, COL_CONDENSED, COL_CX, COL_CY, COL_DIVIDING, COL_H)
from cellpose.data.features import debris, focus_mix
from cellpose.data.noise import illumination, stream_key

MAX_BYTES = 40_000
_AMP = np.array(cells._AMP)  # harmonic amplitude per cell type
_FONT = ImageFont.load_default(size=11)


def to8(img, lo=None, hi=None):
    """Stretch to 8 bits between ``lo`` and ``hi`` (default: the 0.5 and 99.7 percentiles)."""
    img = np.asarray(img, np.float64)
    lo = np.percentile(img, 0.5) if lo is None else lo
    hi = np.percentile(img, 99.7) if hi is None else hi
    return (np.clip((img - lo) / max(hi - lo, 1e-9), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def panel(img8, caption, zoom=1):
    """A grayscale panel with its caption in a strip above."""
    im = Image.fromarray(img8, "L")
    if zoom > 1:
        im = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
    out = Image.new("L", (im.width, im.height + 14), 255)
    out.paste(im, (0, 14))
    ImageDraw.Draw(out).text((2, 1), caption, fill=0, font=_FONT)
    return out


def save(panels, path, cols=None):
    """Montage of ``panels`` (rows of ``cols``) with 4-px gaps → ``path``; check the size limit."""
    cols = cols or len(panels)
    rows = math.ceil(len(panels) / cols)
    w = max(p.width for p in panels)
    h = max(p.height for p in panels)
    out = Image.new("L", (cols * w + (cols - 1) * 4, rows * h + (rows - 1) * 4), 255)
    for k, p in enumerate(panels):
        out.paste(p, ((k % cols) * (w + 4), (k // cols) * (h + 4)))
    out.save(path, optimize=True)
    size = path.stat().st_size
    print(f"{path}  {out.width}x{out.height}  {size / 1000:.1f} kB")
    if size > MAX_BYTES:
        raise SystemExit(f"{path} is {size} bytes > {MAX_BYTES}")


@contextlib.contextmanager
def spots_only(keep):
    """Render with only the spots whose amplitude passes ``keep`` (nucleoli: < 0, chromocentres: > 0)."""
    orig = generator.nucleus_spots

    def filtered(P, ids, key):
        S = orig(P, ids, key)
        S[~keep(S[:, :, 3])] = 0.0
        return S

    generator.nucleus_spots = filtered
    try:
        yield
    finally:
        generator.nucleus_spots = orig


def crop_at(scene, cy, cx, half):
    cy, cx = int(round(cy)), int(round(cx))
    return scene.render(0, cy - half, cy + half, cx - half, cx + half)


def labels_view(lab):
    """Labels as gray levels (hashed per label) with black boundaries."""
    g = (40 + (lab.astype(np.uint64) * np.uint64(2654435761) % np.uint64(200))).astype(np.uint8)
    g[lab == 0] = 0
    edge = np.zeros(lab.shape, bool)
    edge[1:] |= lab[1:] != lab[:-1]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    g[edge] = 0
    return g


def fig_texture_spots(out):
    scene = Scene((1, 1024, 1024), seed=3, diameter=(40, 56), defocus=0.0, culture=0.7)
    win = (464, 560, 464, 560)
    with spots_only(lambda a: np.zeros(a.shape, bool)):
        bare = scene.render(0, *win)
    with spots_only(lambda a: a > 0):
        chromo = scene.render(0, *win)
    with spots_only(lambda a: a < 0):
        nucleoli = scene.render(0, *win)
    lo, hi = np.percentile(bare, 0.5), np.percentile(bare, 99.9)
    save([panel(to8(bare, lo, hi), "texture only", 2), panel(to8(chromo, lo, hi), "+ chromocentres", 2)],
         out / "data_texture.png")
    save([panel(to8(bare, lo, hi), "no nucleoli", 2), panel(to8(nucleoli, lo, hi), "+ nucleoli", 2)],
         out / "data_nucleoli.png")


def _pick(P, types, ids, mask, lo, hi):
    """Row of the first nucleus (label order) satisfying ``mask`` whose centre lies in [lo, hi)²."""
    inside = (P[:, COL_CY] >= lo) & (P[:, COL_CY] < hi) & (P[:, COL_CX] >= lo) & (P[:, COL_CX] < hi)
    rows = np.nonzero(mask & inside & (P[:, COL_BRIGHT] > 0.7) & (P[:, COL_BRIGHT] < 1.8))[0]
    return rows[0]


def fig_shapes_and_states(out):
    scene = Scene((1, 3000, 3000), seed=1, diameter=(16, 32), defocus=0.0)
    P, types, ids = scene.nuclei(0, 3000, 0, 3000)
    ratio = P[:, COL_B] / P[:, COL_A]
    lobed = np.abs(P[:, COL_H:COL_H + 6]).max(1) > _AMP[types] + 1e-12
    plain = (P[:, COL_DIVIDING] == 0) & (P[:, COL_CONDENSED] == 0)
    picks = [("round", plain & ~lobed & (types == 0) & (ratio > 0.9)),
             ("lobed", plain & lobed & (types == 4)),
             ("elongated", plain & ~lobed & (types == 1) & (ratio > 0.4)),
             ("spindle", plain & ~lobed & (ratio < 0.25))]
    panels = []
    for caption, mask in picks:
        i = _pick(P, types, ids, mask, 200, 2800)
        panels.append(panel(to8(crop_at(scene, P[i, COL_CY], P[i, COL_CX], 48)), caption))
    save(panels, out / "data_shapes.png")
    panels = []
    for caption, mask in [("dividing pair", P[:, COL_DIVIDING] > 0), ("condensed", P[:, COL_CONDENSED] > 0)]:
        inside = (P[:, COL_CY] > 200) & (P[:, COL_CY] < 2800) & (P[:, COL_CX] > 200) & (P[:, COL_CX] < 2800)
        i = np.nonzero(mask & inside)[0][0]
        panels.append(panel(to8(crop_at(scene, P[i, COL_CY], P[i, COL_CX], 48)), caption))
    save(panels, out / "data_division.png")
    # touching pair: two nuclei of one grid cell (labels 2k+1, 2k+2) that share a boundary
    pair = np.nonzero((np.diff(ids) == 1) & (ids[:-1] % 2 == 1) & plain[:-1] & plain[1:])[0]
    for i in pair:
        cy, cx = 0.5 * (P[i, COL_CY] + P[i + 1, COL_CY]), 0.5 * (P[i, COL_CX] + P[i + 1, COL_CX])
        if not 200 < cy < 2800 or not 200 < cx < 2800:
            continue
        y0, x0 = int(round(cy)) - 40, int(round(cx)) - 40
        lab = scene.labels(y0, y0 + 80, x0, x0 + 80)
        a, b = lab == ids[i], lab == ids[i + 1]
        shared = (a[:, :-1] & b[:, 1:]).sum() + (a[:-1] & b[1:]).sum() + (b[:, :-1] & a[:, 1:]).sum()
        if shared >= 8 and 0.7 < P[i, COL_BRIGHT] / P[i + 1, COL_BRIGHT] < 1.4:
            img = scene.render(0, y0, y0 + 80, x0, x0 + 80)
            save([panel(to8(img), "touching pair"), panel(labels_view(lab), "labels")], out / "data_touching.png")
            return
    raise SystemExit("no touching pair found")


def fig_defocus(out):
    seed, (y0, x0), n = 1, (656, 176), 160
    win = (y0, y0 + n, x0, x0 + n)
    sharp = Scene((1, 2000, 2000), seed=seed, culture=0.8, defocus=0.0).render(0, *win)
    soft = Scene((1, 2000, 2000), seed=seed, culture=0.8, defocus=4.0).render(0, *win)
    z = np.zeros((n, n), np.float32)
    w = focus_mix(z, np.ones_like(z), y0, x0, stream_key(seed, 12), generator._FOCUS_SCALE)
    lo, hi = np.percentile(sharp, 0.5), np.percentile(sharp, 99.7)
    save([panel(to8(sharp, lo, hi), "defocus 0"), panel(to8(soft, lo, hi), "defocus 4"),
          panel(to8(w, 0.0, 1.0), "focus map (white: 1)")], out / "data_defocus.png")


def fig_illumination(out):
    fy, fx = generator._FOV
    step = 16  # 2 × 2 fields of view of 1080 × 1280 px, sampled every 16 px
    scene = Scene((1, 2 * int(fy), 2 * int(fx)), seed=0, culture=0.9)
    yy, xx = np.arange(0, 2 * fy, step), np.arange(0, 2 * fx, step)
    key = stream_key(scene.seed, 4)
    illum = np.array([[illumination(key, float(y), float(x), fy, fx, 3.0 * scene.tissue_scale) for x in xx]
                      for y in yy])
    print(f"illumination over 2x2 fields: {illum.min():.3f}-{illum.max():.3f}")
    save([panel(to8(illum, 0.55, 1.1), f"2 x 2 fields, gain {illum.min():.2f}-{illum.max():.2f}")],
         out / "data_illumination.png")


def fig_background(out):
    scene = Scene((1, 1024, 1024), seed=0, defocus=0.0)
    lab = scene.labels(0, 1024, 0, 1024)
    # a tissue edge: the 128² window with the most even mix of empty and tissue 32² tiles
    occupied = lab.reshape(32, 32, 32, 32).any((1, 3))
    best, where = -1.0, (0, 0)
    for ty in range(0, 29):
        for tx in range(0, 29):
            f = occupied[ty:ty + 4, tx:tx + 4].mean()
            if min(f, 1 - f) > best:
                best, where = min(f, 1 - f), (ty * 32, tx * 32)
    edge = scene.render(0, where[0], where[0] + 128, where[1], where[1] + 128)
    lo, hi = scene.diameter
    field = np.zeros((1024, 1024), np.float32)
    debris(field, 0, 0, stream_key(scene.seed, 11), 3.0 * hi, 0.15 * lo + 0.5, scene.dna_level, 0.12)
    field[lab > 0] = 0
    cy, cx = np.unravel_index(int(np.argmax(field[64:-64, 64:-64])), (896, 896))
    junk = crop_at(scene, cy + 64, cx + 64, 64)
    save([panel(to8(edge, 180, 900), "tissue edge (180-900)"),
          panel(to8(junk, 180, 1500), "debris, centre (180-1500)")],
         out / "data_background.png")


def fig_snr(out):
    win = (400, 528, 400, 528)
    panels = []
    for level in (5000.0, 500.0, 150.0):
        img = Scene((1, 1024, 1024), seed=2, diameter=(14, 24), culture=0.6, defocus=0.0,
                    dna_level=level).render(0, *win)
        panels.append(panel(to8(img), f"dna_level {level:g}"))
    save(panels, out / "data_snr.png")


def fig_sizes(out):
    panels = []
    for name in ("crowded", "large"):
        k = sets.KINDS[name]
        img = Scene((1, 1024, 1024), seed=5, diameter=k.diameter, culture=k.culture, defocus=0.0).render(
            0, 448, 576, 448, 576)
        panels.append(panel(to8(img), f"{k.diameter[0]:g}-{k.diameter[1]:g} px ({name})"))
    save(panels, out / "data_sizes.png")


def fig_layouts(out):
    panels = []
    for caption, culture in (("tissue (culture=0)", 0.0), ("culture=0.6", 0.6)):
        scene = Scene((1, 1536, 1536), seed=0, culture=culture)
        img = scene.render(0, 0, 1536, 0, 1536).astype(np.float64)
        panels.append(panel(to8(img.reshape(128, 12, 128, 12).mean((1, 3))), caption + ", 12x12 means"))
    save(panels, out / "data_layouts.png")


def fig_kinds(out):
    panels = []
    for name in sets.KINDS:
        img, _ = sets.held_out(name, n=1, size=96)[0]
        panels.append(panel(to8(img), name))
    save(panels, out / "data_kinds.png", cols=3)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img")
    out = p.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for fig in (fig_texture_spots, fig_shapes_and_states, fig_defocus, fig_illumination, fig_background, fig_snr,
                fig_sizes, fig_layouts, fig_kinds):
        fig(out)


if __name__ == "__main__":
    main()
