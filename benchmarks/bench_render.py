"""Render kernel: 3-band 64x64 stamps per second per core against lenstronomy and the floor.

Runs everything single-threaded in one process, side by side:
- lensarray.render_unit_arcs (adaptive numba kernel, default settings) for batch sizes;
- lenstronomy ImageModel with the same lens, source, PSF (Gaussian) and supersampling 8 with
  supersampled convolution, (a) rebuilt per stamp as a data-set generator must, (b) prebuilt
  with only kwargs changing;
- the floor: the same batch's FFT convolution alone, and a numpy copy of the output.
Accuracy of both against a converged lenstronomy reference (supersampling 12).

    python benchmarks/bench_render.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

from common import table, write  # noqa: E402


def _timeit(fn, min_time=1.0):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt > min_time:
            return dt / n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    from _lenstronomy_ref import lenstronomy_image, random_params

    from lensarray.physics.psf import fft_convolve, gaussian_psf, kernel_size
    from lensarray.physics.render import render_unit_arcs

    batches = (1, 64, 512) if args.quick else (1, 64, 512, 4096)
    rows = []
    for b in batches:
        p = random_params(b, seed=b)
        t = _timeit(lambda: render_unit_arcs(p), min_time=0.5 if args.quick else 2.0)
        out, _ = render_unit_arcs(p)
        kern = gaussian_psf(p["psf_fwhm"], kernel_size(64), 0.262).astype(np.float32)
        images = out.astype(np.float32)
        t_fft = _timeit(lambda: fft_convolve(images, kern), min_time=0.3)
        t_copy = _timeit(lambda: out.copy(), min_time=0.2)
        rows.append({"batch": b, "lensarray_stamps_per_s": b / t, "fft_floor_per_s": b / t_fft,
                     "copy_floor_per_s": b / t_copy, "ratio_to_fft_plus_copy": t / (t_fft + t_copy)})
    # lenstronomy, same parameters, supersampling 8 (matched accuracy) and the converged reference
    n_ref = 8 if args.quick else 24
    p = random_params(n_ref, seed=99)
    refs = np.array([[lenstronomy_image(p, i, band, supersample=12)[0] for band in range(3)] for i in range(n_ref)])
    t0 = time.perf_counter()
    lt = np.array([[lenstronomy_image(p, i, band, supersample=8)[0] for band in range(3)] for i in range(n_ref)])
    t_rebuilt = (time.perf_counter() - t0) / n_ref
    models = [lenstronomy_image(p, 0, band, supersample=8)[1] for band in range(3)]
    t0 = time.perf_counter()
    for i in range(n_ref):
        for band in range(3):
            # prebuilt: same PSF object per band, only kwargs change (PSF width of stamp 0)
            lenstronomy_image({**p, "psf_fwhm": np.repeat(p["psf_fwhm"][:1], n_ref, 0)}, i, band, supersample=8,
                              model=models[band])
    t_prebuilt = (time.perf_counter() - t0) / n_ref
    mine, _ = render_unit_arcs(p)

    def err(img):
        e = np.abs(img - refs).max(axis=(2, 3)) / refs.max(axis=(2, 3))
        f = np.abs(img.sum(axis=(2, 3)) / refs.sum(axis=(2, 3)) - 1)
        return float(e.max()), float(np.median(e)), float(f.max())

    acc = {"lensarray": err(mine), "lenstronomy_ss8": err(lt)}
    ours = rows[-1]["lensarray_stamps_per_s"]  # the largest batch: how a build renders
    summary = {"lenstronomy_rebuilt_per_s": 1 / t_rebuilt, "lenstronomy_prebuilt_per_s": 1 / t_prebuilt,
               "lensarray_best_per_s": ours, "speedup_vs_rebuilt": ours * t_rebuilt,
               "speedup_vs_prebuilt": ours * t_prebuilt,
               "accuracy_vs_converged": {k: {"max_pixel_err_frac_peak": v[0], "median_pixel_err_frac_peak": v[1],
                                             "max_flux_err": v[2]} for k, v in acc.items()}}
    print(table(rows, ["batch", "lensarray_stamps_per_s", "fft_floor_per_s", "copy_floor_per_s",
                       "ratio_to_fft_plus_copy"]))
    print()
    print(f"lenstronomy (supersampling 8, supersampled convolution): rebuilt {1 / t_rebuilt:.1f} stamps/s, "
          f"prebuilt {1 / t_prebuilt:.1f} stamps/s; lensarray (batch {rows[-1]["batch"]}) {ours:.0f} stamps/s "
          f"= {summary['speedup_vs_rebuilt']:.0f}x rebuilt, {summary['speedup_vs_prebuilt']:.0f}x prebuilt")
    for k, v in acc.items():
        print(f"accuracy {k:<16} max {v[0]:.4f} median {v[1]:.4f} of peak; flux {v[2]:.4f}")
    path = write("render", {"quick": args.quick, "rows": rows, **summary})
    print(f"wrote {path}")
    return summary


if __name__ == "__main__":
    main()
