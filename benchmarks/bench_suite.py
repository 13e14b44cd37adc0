"""asv benchmarks: every variant against the exact path, stage by stage, with accuracy and throughput.

Run with asv (``asv run --python=same --quick``; configuration ``asv.conf.json`` at the repository root) or with
pytest (``pytest benchmarks/``: ``benchmarks/conftest.py`` collects these classes, runs each parameter
combination once and prints one comparison table). Sizes and variants: ``benchmarks/_fixtures.py``
(``CPTB_BENCH_SIZE=3138,2509`` for the exemplar size, ``CPTB_BENCH_FULL=1`` for the slow variants).

* ``Stages``: ``time_stage`` / ``peakmem_stage`` of one stage (read, normalize, network, dynamics, write,
  whole, blockwise) for each variant that changes that stage (other pairs are skipped: they equal exact's).
  ``network`` is ``eval(compute_masks=False)`` (convert + normalize + tiles + forward passes, the last
  dominating); ``dynamics`` runs on the exact path's flows, so only the dynamics variant differs.
* ``Accuracy``: one full ``eval`` per variant (in ``setup``), then ``track_*``: AP@0.5 / AP@0.9 of its masks
  against the exact path's masks (``cellpose.metrics.average_precision``), the cell count, Mpx/s and cells/s.

Fixtures (generated 4-channel OME-TIFFs via ``cellpose.data.make_image``, the exact path's masks and flows with
the bundled model ``cptb_nuclei``) are made once in ``setup_cache``; models are loaded and warmed up (compiled
networks built for the fixture's own batch shapes, numba dynamics compiled) in ``setup``, never in a timed
method. Timings are therefore steady-state per image; the one-off build of ``compile`` / ``openvino`` is in
``--profile``'s ``network.compile`` stage (GUIDELINES §7).
"""
from __future__ import annotations

import time

import numpy as np

import _fixtures as fx

__all__ = ["Accuracy", "Stages"]


class Stages:
    """Wall time and peak RSS of one pipeline stage, per variant and image size."""

    params = (fx.variant_names(), fx.sizes(), list(fx.STAGES))
    param_names = ("variant", "size", "stage")
    timeout = 1800
    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0

    def setup_cache(self):
        """Images and exact references of every size (see ``_fixtures.make_fixtures``)."""
        return fx.make_fixtures()

    def setup(self, cache, variant, size, stage):
        """Load and warm up the model; build the stage's callable. Pairs a variant does not change are skipped."""
        if not fx.applies(variant, stage):
            raise NotImplementedError(f"{variant} does not change stage {stage} (same as exact)")
        fixture = cache["sizes"][size]
        self.model = fx.load_model(variant) if stage in ("network", "whole", "blockwise") else None
        if self.model is not None or stage == "dynamics":
            fx.warm_up(self.model or fx.load_model(), variant, np.load(fixture["plane"]))
        self.call = fx.stage_call(stage, fixture, variant, self.model)
        if stage == "blockwise" and fx.builds_per_shape(self.model, variant):
            self.call()                     # block-shaped batches: build them before the timed call

    def time_stage(self, cache, variant, size, stage):
        """Seconds of one call of the stage."""
        self.call()

    def peakmem_stage(self, cache, variant, size, stage):
        """Peak RSS of the process during the stage (asv: of the whole benchmark process)."""
        self.call()


class Accuracy:
    """Masks of each variant against the exact path's, and its throughput (one full eval per setup)."""

    params = ([v for v in fx.variant_names()] + ["blockwise"], fx.sizes())
    param_names = ("variant", "size")
    timeout = 1800

    def setup_cache(self):
        """Images and exact references of every size (see ``_fixtures.make_fixtures``)."""
        return fx.make_fixtures()

    def setup(self, cache, variant, size):
        """Segment the fixture with ``variant`` (after a warm-up); keep masks and wall seconds."""
        fixture, shape = cache["sizes"][size], fx.shape_of(size)
        model = fx.load_model("exact" if variant == "blockwise" else variant)
        fx.warm_up(model, "exact" if variant == "blockwise" else variant, np.load(fixture["plane"]))
        self.reference = np.load(fixture["masks"])
        t0 = time.perf_counter()
        self.masks = _segment(fixture, variant, model, shape)
        self.wall_s = time.perf_counter() - t0
        self.pixels = shape[0] * shape[1]

    def _ap(self, threshold: float) -> float:
        from cellpose.metrics import average_precision

        return float(average_precision(self.reference, self.masks, thresholds=(threshold,))["ap"][0])

    def track_ap50_vs_exact(self, cache, variant, size):
        """AP at IoU 0.5 of this variant's masks, the exact path's masks being the truth."""
        return self._ap(0.5)

    track_ap50_vs_exact.unit = "AP"

    def track_ap90_vs_exact(self, cache, variant, size):
        """AP at IoU 0.9 against the exact path."""
        return self._ap(0.9)

    track_ap90_vs_exact.unit = "AP"

    def track_cells(self, cache, variant, size):
        """Number of masks."""
        return int(np.unique(self.masks).size - 1)

    track_cells.unit = "cells"

    def track_mpx_per_s(self, cache, variant, size):
        """Image megapixels per second of the full segmentation (read to masks)."""
        return self.pixels / 1e6 / self.wall_s

    track_mpx_per_s.unit = "Mpx/s"

    def track_cells_per_s(self, cache, variant, size):
        """Cells per second of the full segmentation."""
        return self.track_cells(cache, variant, size) / self.wall_s

    track_cells_per_s.unit = "cells/s"


def _segment(fixture: dict, variant: str, model, shape) -> np.ndarray:
    """Masks of the fixture's nuclear channel: whole-image ``eval`` or, for ``blockwise``, the serial run."""
    if variant != "blockwise":
        plane = np.load(fixture["plane"])
        return model.eval(plane, **fx.eval_kwargs(variant, shape))[0]
    from cellpose.io.ngff import open_label_level

    result = fx.stage_call("blockwise", fixture, "exact", model)()
    return np.asarray(open_label_level(result.store, 0)[:])
