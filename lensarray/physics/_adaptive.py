"""Numba kernel: adaptive supersampled ray tracing onto a convolution-cell grid.

Profiling the vectorised numpy renderer (64 stamps, supersample 8): ray tracing and the Sersic
evaluation took 70% of the time for 262k points per stamp, although the source covers a few
hundred pixels. Here every pixel is first probed at 2x2 points; only pixels whose probes land
within ``3 R_sersic + 0.2"`` (elliptical radius) of the source centre, or that lie within 2
pixels of the lens centre (where the deflection field changes fastest), are traced at the full
``supersample``; the others keep the 2x2 estimate of the faint wings. Flux lands directly on the
``conv_cells``-per-pixel grid, so no supersampled array is ever allocated.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["trace_cells"]


@njit(cache=True, inline="always")
def _flux_at(x, y, theta_e, q, cphi, sphi, lx, ly, g1, g2, sx, sy, sq, cs_src, ss_src, r_sersic, inv_n, bn, amp):
    dx = x - lx
    dy = y - ly
    # SIE deflection in the lens frame (lenstronomy NIE, core -> 0)
    xr = cphi * dx + sphi * dy
    yr = -sphi * dx + cphi * dy
    if theta_e > 0.0:
        if 1.0 - q < 1e-6:
            r = math.sqrt(xr * xr + yr * yr)
            if r < 1e-12:
                r = 1e-12
            axr = theta_e * xr / r
            ayr = theta_e * yr / r
        else:
            b = theta_e * math.sqrt(q)
            f = math.sqrt(1.0 - q * q)
            psi = math.sqrt(q * q * xr * xr + yr * yr)
            if psi < 1e-12:
                psi = 1e-12
            axr = b / f * math.atan(f * xr / psi)
            t = f * yr / psi
            if t > 1.0 - 1e-15:
                t = 1.0 - 1e-15
            elif t < -1.0 + 1e-15:
                t = -1.0 + 1e-15
            ayr = b / f * math.atanh(t)
        ax = cphi * axr - sphi * ayr
        ay = sphi * axr + cphi * ayr
    else:
        ax = 0.0
        ay = 0.0
    bx = x - ax - (g1 * dx + g2 * dy)
    by = y - ay - (g2 * dx - g1 * dy)
    # elliptical Sersic (product-average radius)
    ux = bx - sx
    uy = by - sy
    xs = cs_src * ux + ss_src * uy
    ys = -ss_src * ux + cs_src * uy
    rr = math.sqrt(sq * xs * xs + ys * ys / sq)
    if rr < 1e-5:
        rr = 1e-5
    return amp * math.exp(-bn * (math.pow(rr / r_sersic, inv_n) - 1.0)), rr


@njit(cache=True)
def trace_cells(params, size, pixel_scale, supersample, conv_cells, out_cells, out_mu, out_hi_frac):
    """Fill ``out_cells (n, size*conv_cells, size*conv_cells)`` with lensed unit-source flux.

    ``params`` is ``(n, 17)``: theta_e, q, cos(phi), sin(phi), lens_x, lens_y, g1, g2, src_x,
    src_y, q_src, cos(phi_src), sin(phi_src), r_sersic, 1/n, b_n, amp (unit-flux amplitude).
    """
    n = params.shape[0]
    cs = conv_cells
    half = size // 2
    for k in range(n):
        p = params[k]
        theta_e, q, cphi, sphi, lx, ly, g1, g2 = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
        sx, sy, sq, cs_src, ss_src, rs, inv_n, bn, amp = p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16]
        rcut = 3.0 * rs + 0.2
        total = 0.0
        n_hi = 0
        lx_pix = lx / pixel_scale + half
        ly_pix = ly / pixel_scale + half
        for i in range(size):
            for j in range(size):
                # probe at 2x2 points (one per half-pixel)
                near_lens = (i - ly_pix) ** 2 + (j - lx_pix) ** 2 < 6.25
                hi = near_lens
                lo_vals = np.empty(4)
                m = 0
                for a in range(2):
                    y = (i - half + (a + 0.5) / 2.0 - 0.5) * pixel_scale
                    for b in range(2):
                        x = (j - half + (b + 0.5) / 2.0 - 0.5) * pixel_scale
                        v, rr = _flux_at(x, y, theta_e, q, cphi, sphi, lx, ly, g1, g2, sx, sy, sq, cs_src, ss_src,
                                         rs, inv_n, bn, amp)
                        lo_vals[m] = v
                        m += 1
                        if rr < rcut:
                            hi = True
                if hi:
                    n_hi += 1
                    ss = supersample
                    w = (pixel_scale / ss) ** 2
                    for a in range(ss):
                        y = (i - half + (a + 0.5) / ss - 0.5) * pixel_scale
                        ci = i * cs + (a * cs) // ss
                        for b in range(ss):
                            x = (j - half + (b + 0.5) / ss - 0.5) * pixel_scale
                            cj = j * cs + (b * cs) // ss
                            v, rr = _flux_at(x, y, theta_e, q, cphi, sphi, lx, ly, g1, g2, sx, sy, sq, cs_src,
                                             ss_src, rs, inv_n, bn, amp)
                            out_cells[k, ci, cj] += v * w
                            total += v * w
                else:
                    w = (pixel_scale / 2.0) ** 2
                    m = 0
                    for a in range(2):
                        ci = i * cs + (a * cs) // 2
                        for b in range(2):
                            cj = j * cs + (b * cs) // 2
                            out_cells[k, ci, cj] += lo_vals[m] * w
                            total += lo_vals[m] * w
                            m += 1
        out_mu[k] = total
        out_hi_frac[k] = n_hi / (size * size)
