"""Numba kernel: error-controlled adaptive ray tracing onto a convolution-cell grid.

Why this shape (profile of the previous kernel, 512 stamps of the benchmark set): it probed every
pixel at 2x2 points and traced every pixel whose probes landed within ``3 R_sersic + 0.2"`` of
the source at the full 12x12: 16k probes + ~355 pixels x 144 = ~67k SIE + Sersic evaluations per
stamp at ~68 ns each, 4.6 ms of a 5.8 ms stamp. Most of those pixels sit where far fewer points
give the same flux. Here each pixel is refined in levels, each only where the one before cannot
be trusted (midpoint-rule errors scale as h^2, which gives the estimates below):

- L0: one point per pixel centre, on the stamp plus a one-pixel border. A pixel whose whole
  source-plane footprint (half-diagonal times the largest lens-Jacobian eigenvalue at its centre,
  ``max(1, |1 - 2 kappa|) + gamma``) stays beyond ``3 R_sersic + 0.2"`` of the source, and whose
  curvature (five-point Laplacian, error ``h^2 lap / 24``) is within tolerance, keeps this
  value with that curvature correction, a quarter in each cell.
- L1: the 2x2 cell centres; error ~ (L1 - L0) / 3, added as a Richardson correction when
  accepted.
- L2: 3x3 points per cell (supersampling 6) where that error exceeds the tolerance, the source
  core (``rr < R_sersic``) may lie inside the cell, or the cell is within 1 pixel of the lens
  centre; error ~ (L2 - L1) / 8, likewise corrected.
- L3: ``supersample / 2`` points per cell side where L2's error still exceeds the tolerance, and
  always next to the lens centre (the deflection is singular there). No extrapolation at L3:
  near the singular points the error does not scale as h^2; its estimate is (L3 - L2) scaled.
- Quadtree (:func:`_square_sum`): where L3 is still not within the tolerance (a source much
  smaller than a cell) and, straight after L1, in every cell whose footprint may hold the source
  centre of a cusped profile (n > 1) where the cusp can matter: the images of the source centre
  are where the Sersic cusp lands, and a cusp defeats any fixed grid and any h^2 estimate.
  Squares split in four while their 4x4 / 2x2 midpoint rules disagree or while the cusp flux a
  midpoint rule can misplace in their footprint (the Sersic excess over the footprint's
  brightness times a magnification bound) exceeds the tolerance; a square split for the cusp
  alone refines only the children that may hold the source centre. A cell need not be
  integrated better than ``0.1 tolerance`` of its own flux (no pixel errs by more than the
  largest relative error of the cells it sums).

The tolerance is absolute per cell: ``tolerance`` times the unit source's surface brightness at
``R_sersic`` (for a source smaller than a pixel, a quarter of its mean over a pixel-sized disc: its image
peak is set by the pixel and the PSF) times the cell area. Every accepted level adds its error
estimate to a per-cell error map (``return_error``), and (for the stamps whose convolution uses
them) its flux moments about the cell centre to the moment maps the PSF convolution uses for
light with structure inside a cell. With the defaults (supersample 18, tolerance 0.02) a stamp
of the default priors takes ~11-12k evaluations (the kernel before the cusp and compact-source
work, 4.6% of the peak off for them, ~11k; the first cusp quadtree ~16-20k), at ~88 ns each.
Flux lands directly on the 2-cells-per-pixel grid; no supersampled array is ever allocated.
The Sersic power is evaluated as ``exp(log(rr^2) / 2n)`` on the squared radius (no square
root, no ``pow``), the SIE's atanh as a logarithm (libm's atanh was ~4x the cost). Tried and
dropped (no measurable gain): numba fastmath flags, float32 transcendentals (18% on the bare
functions), skipping the Sersic beyond e^-60 of its centre; the cusp quadtree for n > 1.5 only
(11% fewer evaluations, but compact-source and narrow-PSF errors doubled).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["trace_cells"]


@njit(cache=True, inline="always")
def _flux_at(
    x, y, theta_e, q, cphi, sphi, lx, ly, g1, g2, sx, sy, sq, cs_src, ss_src, log_rs2, half_inv_n, bn, amp_e, bq, f, bf
):
    """Unit-source surface brightness at image position (x, y), the squared elliptical source
    radius there and ``2 kappa`` of the SIE (for the footprint bound)."""
    dx = x - lx
    dy = y - ly
    xr = cphi * dx + sphi * dy
    yr = -sphi * dx + cphi * dy
    two_kappa = 0.0
    if theta_e > 0.0:
        if f < 1e-3:
            r = math.sqrt(xr * xr + yr * yr)
            if r < 1e-12:
                r = 1e-12
            axr = theta_e * xr / r
            ayr = theta_e * yr / r
            two_kappa = theta_e / r
        else:
            psi = math.sqrt(q * q * xr * xr + yr * yr)
            if psi < 1e-12:
                psi = 1e-12
            axr = bf * math.atan(f * xr / psi)
            t = f * yr / psi
            if t > 1.0 - 1e-15:
                t = 1.0 - 1e-15
            elif t < -1.0 + 1e-15:
                t = -1.0 + 1e-15
            # atanh as its logarithm: libm's atanh took ~23 ns here against ~5 ns for the log
            # (measured under numba), agreeing to 2e-16 in absolute terms over (-1, 1)
            ayr = 0.5 * bf * math.log((1.0 + t) / (1.0 - t))
            two_kappa = bq / psi
        ax = cphi * axr - sphi * ayr
        ay = sphi * axr + cphi * ayr
    else:
        ax = 0.0
        ay = 0.0
    bx = x - ax - (g1 * dx + g2 * dy)
    by = y - ay - (g2 * dx - g1 * dy)
    ux = bx - sx
    uy = by - sy
    xs = cs_src * ux + ss_src * uy
    ys = -ss_src * ux + cs_src * uy
    rr2 = sq * xs * xs + ys * ys / sq
    if rr2 < 1e-10:
        rr2 = 1e-10  # lenstronomy's 1e-5 arcsec smoothing of the cusp
    return amp_e * math.exp(-bn * math.exp(half_inv_n * (math.log(rr2) - log_rs2))), rr2, two_kappa


@njit(cache=True, inline="always")
def _point_moments(vals, m, mom):
    """Mean of the m x m midpoint values ``vals`` (row-major, rows along y) over their square;
    ``mom`` receives the means of ``SB dx, SB dy, SB dx^2, SB dy^2, SB dx dy`` (offsets from the
    square's centre in its sides; each point standing for a uniform sub-square, whose own
    variance 1/(12 m^2) is added)."""
    acc = 0.0
    mx = my = mxx = myy = mxy = 0.0
    inv = 1.0 / m
    for a in range(m):
        dy = (a + 0.5) * inv - 0.5
        for b in range(m):
            dx = (b + 0.5) * inv - 0.5
            v = vals[a * m + b]
            acc += v
            mx += v * dx
            my += v * dy
            mxx += v * dx * dx
            myy += v * dy * dy
            mxy += v * dx * dy
    w = 1.0 / (m * m)
    sub = acc * w * inv * inv / 12.0
    mom[0] = mx * w
    mom[1] = my * w
    mom[2] = mxx * w + sub
    mom[3] = myy * w + sub
    mom[4] = mxy * w
    return acc * w


@njit(cache=True)
def _cell_sum(
    y0,
    x0,
    step,
    m,
    theta_e,
    q,
    cphi,
    sphi,
    lx,
    ly,
    g1,
    g2,
    sx,
    sy,
    sq,
    cs_src,
    ss_src,
    log_rs2,
    half_inv_n,
    bn,
    amp_e,
    bq,
    f,
    bf,
    mom,
    vals,
):
    """Mean surface brightness over an m x m midpoint grid starting at (x0, y0) with ``step``
    (the cell: side ``m step``), its moments in ``mom`` (:func:`_point_moments`); ``vals`` is
    scratch of at least m^2."""
    for a in range(m):
        y = y0 + (a + 0.5) * step
        for b in range(m):
            v, _, _ = _flux_at(
                x0 + (b + 0.5) * step,
                y,
                theta_e,
                q,
                cphi,
                sphi,
                lx,
                ly,
                g1,
                g2,
                sx,
                sy,
                sq,
                cs_src,
                ss_src,
                log_rs2,
                half_inv_n,
                bn,
                amp_e,
                bq,
                f,
                bf,
            )
            vals[a * m + b] = v
    return _point_moments(vals, m, mom)


@njit(cache=True, inline="always")
def _cusp_stake(reach, two_kappa, gamma, bn, half_inv_n, rs, two_n, log_gamma_2n2):
    """Bound on the cusp flux (unit source) a 4x4 midpoint rule over a square can misplace when
    its source-plane footprint (radius ``reach``) may hold the source centre: the Sersic excess
    over the brightness at a quarter of the reach (about the rule's point spacing),
    ``P(2n + 1, z) <= z^(2n+1) / (2n+1)!``, times a magnification bound (see
    :func:`_square_sum`)."""
    z = bn * math.exp(half_inv_n * 2.0 * math.log(0.25 * reach / rs))
    return min(1.0, math.exp((two_n + 1.0) * math.log(z) - log_gamma_2n2)) / max(abs(1.0 - two_kappa) - gamma, 0.05)


_STACK = 128  # depth-first quadtree: at most 3 pending squares per level (40 levels)
_MIN_SIDE = 1e-6  # arcsec; below lenstronomy's 1e-5" smoothing of the cusp
_MAX_EVALS = 16384  # per cell: bounds the cost on a caustic, where the bound on the magnification is loose


@njit(cache=True)
def _square_sum(
    x0,
    y0,
    side,
    tol,
    theta_e,
    q,
    cphi,
    sphi,
    lx,
    ly,
    g1,
    g2,
    sx,
    sy,
    sq,
    cs_src,
    ss_src,
    log_rs2,
    half_inv_n,
    bn,
    amp_e,
    bq,
    f,
    bf,
    gamma,
    inv_sqrt_qs,
    rs,
    two_n,
    log_gamma_2n2,
    rel,
    mom,
):
    """Flux (unit source) over the square [x0, x0 + side] x [y0, y0 + side] by adaptive
    quadtree cubature around a Sersic cusp, its error estimate and the evaluations it took.

    Each square: a 4x4 midpoint rule and a 2x2 one (error of the 4x4 ~ |I4 - I2| / 3); a child's
    2x2 points are four of its parent's 4x4 points, and the 2x2 points are the quadrants'
    centres, which give the footprint (16 evaluations per square; only the starting square
    evaluates its 2x2 rule). A square is split in four while that error exceeds the tolerance,
    or while its source-plane footprint may hold the source centre and the cusp flux a midpoint
    rule can misplace there could exceed it: the Sersic flux above the surface brightness at the
    footprint's radius, ``P(2n, z) - z^(2n) e^-z / (2n)! = P(2n + 1, z) <= z^(2n+1) / (2n+1)!``
    (``z = b (r/R)^(1/n)``; the rule's points inside the footprint all see at least that
    brightness), times a magnification bound ``1/max(|1 - 2 kappa| - gamma, 0.05)``. The
    midpoint estimate alone cannot see a cusp that falls between its points; this bound can.
    A square split for the cusp alone (its 4x4 rule within the tolerance) sends on only the
    children whose footprint may hold the source centre; the others keep their 2x2 rule with the
    Richardson correction from their centre (points already taken). ``mom`` receives the flux
    moments about the centre of the starting square in its sides (as :func:`_cell_sum`, times the
    flux).
    """
    xc0 = x0 + 0.5 * side
    yc0 = y0 + 0.5 * side
    inv_side = 1.0 / side
    for c in range(5):
        mom[c] = 0.0
    quad = np.empty(4)
    vals = np.empty(16)
    sm = np.empty(5)
    rrs = np.empty(16)
    tks = np.empty(16)
    pv = np.empty(4)
    pr = np.empty(4)
    pk = np.empty(4)
    st_x = np.empty(_STACK)
    st_y = np.empty(_STACK)
    st_s = np.empty(_STACK)
    st_t = np.empty(_STACK)
    # each pending square's 2x2 points (its quadrants' centres): brightness, squared source
    # radius, 2 kappa
    st_v = np.empty((_STACK, 4))
    st_r = np.empty((_STACK, 4))
    st_k = np.empty((_STACK, 4))
    for c in range(4):
        v, rr2, tk = _flux_at(
            x0 + (c % 2 + 0.5) * 0.5 * side,
            y0 + (c // 2 + 0.5) * 0.5 * side,
            theta_e,
            q,
            cphi,
            sphi,
            lx,
            ly,
            g1,
            g2,
            sx,
            sy,
            sq,
            cs_src,
            ss_src,
            log_rs2,
            half_inv_n,
            bn,
            amp_e,
            bq,
            f,
            bf,
        )
        st_v[0, c], st_r[0, c], st_k[0, c] = v, rr2, tk
    st_x[0], st_y[0], st_s[0], st_t[0] = x0, y0, side, tol
    top = 1
    root = True
    flux = 0.0
    err = 0.0
    evals = 4
    while top > 0:
        top -= 1
        x, y, s, t = st_x[top], st_y[top], st_s[top], st_t[top]
        for c in range(4):
            pv[c], pr[c], pk[c] = st_v[top, c], st_r[top, c], st_k[top, c]
        mean2 = 0.25 * (pv[0] + pv[1] + pv[2] + pv[3])
        # the footprint from the quadrants' centres: the source centre may lie in the square's
        # footprint if it may lie in a quadrant's
        holds = False
        lam = 1.0
        soft = 1.0
        for c in range(4):
            lam_c = max(1.0, abs(1.0 - pk[c])) + gamma
            lam = max(lam, lam_c)
            soft = min(soft, abs(1.0 - pk[c]))
            if math.sqrt(pr[c]) < lam_c * 0.7072 * 0.5 * s * inv_sqrt_qs:
                holds = True
        # the 4x4 rule (per quadrant: the children's 2x2 rules) with its moments about this
        # square's centre in its sides
        for c in range(4):
            quad[c] = 0.0
        for a in range(4):
            yy = y + (a + 0.5) * 0.25 * s
            for b in range(4):
                v, rr2, tk = _flux_at(
                    x + (b + 0.5) * 0.25 * s,
                    yy,
                    theta_e,
                    q,
                    cphi,
                    sphi,
                    lx,
                    ly,
                    g1,
                    g2,
                    sx,
                    sy,
                    sq,
                    cs_src,
                    ss_src,
                    log_rs2,
                    half_inv_n,
                    bn,
                    amp_e,
                    bq,
                    f,
                    bf,
                )
                quad[(a // 2) * 2 + b // 2] += v
                vals[a * 4 + b] = v
                rrs[a * 4 + b] = rr2
                tks[a * 4 + b] = tk
        evals += 16
        mean4 = _point_moments(vals, 4, sm)
        sm0, sm1, sm2, sm3, sm4 = sm[0], sm[1], sm[2], sm[3], sm[4]
        r = s * inv_side
        ox = (x + 0.5 * s - xc0) * inv_side
        oy = (y + 0.5 * s - yc0) * inv_side
        area = s * s
        i4 = mean4 * area
        i2 = mean2 * area
        e = abs(i4 - i2) / 3.0
        stake = 0.0
        if holds and two_n > 2.0:
            # the most magnifying of the quadrants' bounds (``soft``: the smallest |1 - 2 kappa|)
            stake = _cusp_stake(
                lam * 0.7072 * s * inv_sqrt_qs, 1.0 - soft, gamma, bn, half_inv_n, rs, two_n, log_gamma_2n2
            )
        if root:
            # no pixel can err by more than the largest relative error of the cells it sums, so
            # a cell need not be integrated better than a fraction of its own flux
            t = max(t, rel * abs(i4))
            root = False
        if (e > t or stake > t) and s > _MIN_SIDE and top + 4 <= _STACK and evals < _MAX_EVALS:
            h = 0.5 * s
            for c in range(4):
                a0 = 2 * (c // 2)
                b0 = 2 * (c % 2)
                if e <= t and math.sqrt(pr[c]) >= (max(1.0, abs(1.0 - pk[c])) + gamma) * 0.7072 * h * inv_sqrt_qs:
                    # split for the cusp alone, and this child's footprint cannot hold the
                    # source centre: its 2x2 rule, Richardson-corrected from its centre
                    m2c = 0.25 * quad[c]
                    flux += (m2c + (m2c - pv[c]) / 3.0) * h * h
                    err += abs(m2c - pv[c]) / 3.0 * h * h
                    sub2 = (0.25 * r) ** 2 / 12.0
                    for a in range(a0, a0 + 2):
                        py = (y + (a + 0.5) * 0.25 * s - yc0) * inv_side
                        for b in range(b0, b0 + 2):
                            px = (x + (b + 0.5) * 0.25 * s - xc0) * inv_side
                            fp = vals[a * 4 + b] * area / 16.0
                            mom[0] += fp * px
                            mom[1] += fp * py
                            mom[2] += fp * (px * px + sub2)
                            mom[3] += fp * (py * py + sub2)
                            mom[4] += fp * px * py
                    continue
                st_x[top] = x + (c % 2) * h
                st_y[top] = y + (c // 2) * h
                st_s[top] = h
                st_t[top] = t
                for a in range(2):
                    for b in range(2):
                        i_p = (a0 + a) * 4 + b0 + b
                        st_v[top, a * 2 + b] = vals[i_p]
                        st_r[top, a * 2 + b] = rrs[i_p]
                        st_k[top, a * 2 + b] = tks[i_p]
                top += 1
        else:
            flux += i4 if stake > 0.0 else i4 + (i4 - i2) / 3.0
            # the estimate is the rules' difference only: the cusp bound is within the tolerance
            # unless the evaluation cap stopped the refinement, and far too loose near critical
            # curves to be a useful report
            err += e
            mom[0] += area * (ox * mean4 + r * sm0)
            mom[1] += area * (oy * mean4 + r * sm1)
            mom[2] += area * (ox * ox * mean4 + 2.0 * ox * r * sm0 + r * r * sm2)
            mom[3] += area * (oy * oy * mean4 + 2.0 * oy * r * sm1 + r * r * sm3)
            mom[4] += area * (ox * oy * mean4 + ox * r * sm1 + oy * r * sm0 + r * r * sm4)
    return flux, err, evals


@njit(cache=True)
def trace_cells(params, size, pixel_scale, supersample, tolerance, out_cells, out_mu, out_evals, out_err, out_mom):
    """Fill ``out_cells (n, 2 size, 2 size)`` with the lensed flux of a unit source per cell.

    Parameters
    ----------
    params : (n, 19) float64
        theta_e, q, cos(phi), sin(phi), lens_x, lens_y, g1, g2, src_x, src_y, q_src,
        cos(phi_src), sin(phi_src), R_sersic, 1/n, b_n, amp (unit-flux amplitude at R_sersic),
        the surface brightness the tolerance is measured in (``amp``, or less for sources
        smaller than a pixel, see ``render._adaptive_params``), 1 where the stamp's flux moments
        are wanted (else ``out_mom[k]`` is left untouched); angles in arcsec.
    size : int
        Stamp side, pixels.
    pixel_scale : float
        Arcsec per pixel.
    supersample : int
        Largest number of points per pixel side (even).
    tolerance : float
        Per-cell absolute error target in units of the tolerance surface brightness (params
        column 17) times the cell area.
    out_cells, out_mu, out_evals, out_err
        Outputs: cell fluxes (zeroed by the caller), lensed flux in the stamp, the number of
        surface-brightness evaluations per stamp, and the estimated absolute error per cell
        (zeroed by the caller; the Richardson / quadtree estimates of the accepted levels).
    out_mom : (n, 5, 2 size, 2 size) float32
        Flux moments per cell about its centre, offsets in cell sides: ``F dx, F dy, F dx^2,
        F dy^2, F dx dy`` (zeroed by the caller); light accepted at L0/L1 counts as uniform over
        its cell (``F/12`` in each second moment).
    """
    n = params.shape[0]
    half = size // 2
    h = pixel_scale
    hc = 0.5 * h
    pix_area = h * h
    cell_area = hc * hc
    m2 = 3 if supersample > 6 else supersample // 2
    m3 = supersample // 2
    grid = np.empty((size + 2, size + 2))
    mom = np.empty(5)
    zone = np.empty((size + 2, size + 2), dtype=np.bool_)
    # per-pixel L1 scratch, allocated once (list literals would be heap lists per pixel)
    v1 = np.empty(4)
    pts = np.empty(max(m2, m3) ** 2)  # _cell_sum's point values
    close = np.empty(4, dtype=np.bool_)
    cusp = np.empty(4, dtype=np.bool_)
    for k in range(n):
        p = params[k]
        want = p[18] > 0.5
        theta_e, q, cphi, sphi, lx, ly, g1, g2 = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
        sx, sy, sq, cs_src, ss_src, rs, inv_n, bn, amp = p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15], p[16]
        f = math.sqrt(max(1.0 - q * q, 0.0))
        bq = theta_e * math.sqrt(q)
        bf = bq / f if f >= 1e-3 else 0.0
        amp_e = amp * math.exp(bn)
        log_rs2 = 2.0 * math.log(rs)
        half_inv_n = 0.5 * inv_n
        gamma = math.sqrt(g1 * g1 + g2 * g2)
        inv_sqrt_qs = 1.0 / math.sqrt(sq)
        r_zone = 3.0 * rs + 0.2
        tol = tolerance * p[17] * cell_area
        rel = 0.1 * tolerance
        two_n = 2.0 / inv_n
        log_gamma_2n2 = math.lgamma(two_n + 2.0)
        lx_pix = lx / h + half
        ly_pix = ly / h + half
        # L0 on the stamp plus a one-pixel border (for the curvature stencil)
        for i in range(size + 2):
            yc = (i - 1 - half) * h
            for j in range(size + 2):
                xc = (j - 1 - half) * h
                v0, rr2, two_kappa = _flux_at(
                    xc,
                    yc,
                    theta_e,
                    q,
                    cphi,
                    sphi,
                    lx,
                    ly,
                    g1,
                    g2,
                    sx,
                    sy,
                    sq,
                    cs_src,
                    ss_src,
                    log_rs2,
                    half_inv_n,
                    bn,
                    amp_e,
                    bq,
                    f,
                    bf,
                )
                grid[i, j] = v0
                lam = max(1.0, abs(1.0 - two_kappa)) + gamma
                zone[i, j] = math.sqrt(rr2) - lam * 0.7072 * h * inv_sqrt_qs < r_zone
        evals = (size + 2) * (size + 2)
        total = 0.0
        for i in range(size):
            yc = (i - half) * h
            for j in range(size):
                xc = (j - half) * h
                v0 = grid[i + 1, j + 1]
                # midpoint rule: integral = h^2 (f + h^2 lap(f) / 24 + ...); the stencil gives h^2 lap(f)
                lap = grid[i, j + 1] + grid[i + 2, j + 1] + grid[i + 1, j] + grid[i + 1, j + 2] - 4.0 * v0
                near_lens = (i - ly_pix) ** 2 + (j - lx_pix) ** 2 < 1.0
                if not zone[i + 1, j + 1] and not near_lens and abs(lap) / 24.0 * pix_area < 2.0 * tol:
                    q4 = 0.25 * (v0 + lap / 24.0) * pix_area
                    e4 = abs(lap) / 96.0 * pix_area
                    # the pixel's light shared out along its gradient (central differences): the
                    # quarter-pixel offsets of the cells carry first-order position information
                    tx = 0.03125 * (grid[i + 1, j + 2] - grid[i + 1, j]) * pix_area
                    ty = 0.03125 * (grid[i + 2, j + 1] - grid[i, j + 1]) * pix_area
                    for a in range(2):
                        for b in range(2):
                            qc = q4 + (2 * b - 1) * tx + (2 * a - 1) * ty
                            out_cells[k, 2 * i + a, 2 * j + b] += qc
                            out_err[k, 2 * i + a, 2 * j + b] += e4
                            if want:
                                out_mom[k, 0, 2 * i + a, 2 * j + b] += 2.0 * tx / 12.0
                                out_mom[k, 1, 2 * i + a, 2 * j + b] += 2.0 * ty / 12.0
                                out_mom[k, 2, 2 * i + a, 2 * j + b] += qc / 12.0
                                out_mom[k, 3, 2 * i + a, 2 * j + b] += qc / 12.0
                    total += 4.0 * q4
                    continue
                # L1: cell centres; Richardson: error of the 2x2 mean ~ (L1 - L0) / 3
                mean1 = 0.0
                for c in range(4):
                    a, b = c // 2, c % 2
                    vc, rr2c, tk = _flux_at(
                        xc + (b - 0.5) * hc,
                        yc + (a - 0.5) * hc,
                        theta_e,
                        q,
                        cphi,
                        sphi,
                        lx,
                        ly,
                        g1,
                        g2,
                        sx,
                        sy,
                        sq,
                        cs_src,
                        ss_src,
                        log_rs2,
                        half_inv_n,
                        bn,
                        amp_e,
                        bq,
                        f,
                        bf,
                    )
                    v1[c] = vc
                    lam_c = max(1.0, abs(1.0 - tk)) + gamma
                    reach = lam_c * 0.7072 * hc * inv_sqrt_qs
                    close[c] = math.sqrt(rr2c) - reach < rs
                    # the quadtree only where the cusp can matter: the bound of its root square
                    # (which would otherwise just cost more than L2)
                    cusp[c] = (
                        math.sqrt(rr2c) < reach
                        and two_n > 2.0
                        and _cusp_stake(reach, tk, gamma, bn, half_inv_n, rs, two_n, log_gamma_2n2) > tol
                    )
                    mean1 += 0.25 * vc
                evals += 4
                corr1 = (mean1 - v0) / 3.0
                err1 = abs(corr1) * cell_area
                for c in range(4):
                    a, b = c // 2, c % 2
                    x0 = xc - 0.5 * h + b * hc
                    y0 = yc - 0.5 * h + a * hc
                    val = v1[c] + corr1
                    err_c = err1
                    # uniform across the cell, tilted along the gradient between the cell centres
                    mom[0] = (v1[1] + v1[3] - v1[0] - v1[2]) / 24.0
                    mom[1] = (v1[2] + v1[3] - v1[0] - v1[1]) / 24.0
                    mom[4] = 0.0
                    mom[2] = mom[3] = val / 12.0
                    if cusp[c]:
                        # the footprint may hold the source centre of a cusped (n > 1) profile:
                        # the quadtree follows the cusp down to the tolerance
                        fl, err_c, ev = _square_sum(
                            x0,
                            y0,
                            hc,
                            tol,
                            theta_e,
                            q,
                            cphi,
                            sphi,
                            lx,
                            ly,
                            g1,
                            g2,
                            sx,
                            sy,
                            sq,
                            cs_src,
                            ss_src,
                            log_rs2,
                            half_inv_n,
                            bn,
                            amp_e,
                            bq,
                            f,
                            bf,
                            gamma,
                            inv_sqrt_qs,
                            rs,
                            two_n,
                            log_gamma_2n2,
                            rel,
                            mom,
                        )
                        evals += ev
                        out_cells[k, 2 * i + a, 2 * j + b] += fl
                        if want:
                            for t in range(5):
                                out_mom[k, t, 2 * i + a, 2 * j + b] += mom[t]
                        out_err[k, 2 * i + a, 2 * j + b] += err_c
                        total += fl
                        continue
                    if (err1 > tol or close[c] or near_lens) and m2 > 1:
                        v2 = _cell_sum(
                            y0,
                            x0,
                            hc / m2,
                            m2,
                            theta_e,
                            q,
                            cphi,
                            sphi,
                            lx,
                            ly,
                            g1,
                            g2,
                            sx,
                            sy,
                            sq,
                            cs_src,
                            ss_src,
                            log_rs2,
                            half_inv_n,
                            bn,
                            amp_e,
                            bq,
                            f,
                            bf,
                            mom,
                            pts,
                        )
                        evals += m2 * m2
                        corr2 = (v2 - v1[c]) / (m2 * m2 - 1.0)
                        val = v2 + corr2
                        err_c = abs(corr2) * cell_area
                        if m3 > m2 and (abs(corr2) * cell_area > tol or near_lens):
                            # L3: a fixed finer grid (always next to the lens centre, where the
                            # deflection is singular and the h^2 estimate does not hold)
                            v3 = _cell_sum(
                                y0,
                                x0,
                                hc / m3,
                                m3,
                                theta_e,
                                q,
                                cphi,
                                sphi,
                                lx,
                                ly,
                                g1,
                                g2,
                                sx,
                                sy,
                                sq,
                                cs_src,
                                ss_src,
                                log_rs2,
                                half_inv_n,
                                bn,
                                amp_e,
                                bq,
                                f,
                                bf,
                                mom,
                                pts,
                            )
                            evals += m3 * m3
                            err_c = abs(v3 - v2) * cell_area * (m2 * m2) / (m3 * m3 - m2 * m2)
                            val = v3
                            if err_c > tol:
                                # still not converged (a source much smaller than a cell, the
                                # image of the cut): the error-controlled quadtree takes over
                                fl, err_c, ev = _square_sum(
                                    x0,
                                    y0,
                                    hc,
                                    tol,
                                    theta_e,
                                    q,
                                    cphi,
                                    sphi,
                                    lx,
                                    ly,
                                    g1,
                                    g2,
                                    sx,
                                    sy,
                                    sq,
                                    cs_src,
                                    ss_src,
                                    log_rs2,
                                    half_inv_n,
                                    bn,
                                    amp_e,
                                    bq,
                                    f,
                                    bf,
                                    gamma,
                                    inv_sqrt_qs,
                                    rs,
                                    two_n,
                                    log_gamma_2n2,
                                    rel,
                                    mom,
                                )
                                evals += ev
                                v3 = fl / cell_area
                                for t in range(5):
                                    mom[t] /= cell_area
                            val = v3
                    out_cells[k, 2 * i + a, 2 * j + b] += val * cell_area
                    out_err[k, 2 * i + a, 2 * j + b] += err_c
                    if want:
                        for t in range(5):
                            out_mom[k, t, 2 * i + a, 2 * j + b] += mom[t] * cell_area
                    total += val * cell_area
        out_mu[k] = total
        out_evals[k] = evals
