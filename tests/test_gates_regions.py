"""Core-LR regions (disc / box / ring), the mask-edge probe and the gates, on cubes with known answers."""

import numpy as np
import pytest

from lensarray.config import ConfigError, RunConfig
from lensarray.diagnostics import toy_cube
from lensarray.diagnostics.audit import core_lr_on_cube
from lensarray.diagnostics.core_lr import (
    edge_annuli,
    edge_annulus_means,
    mask_edge_probe,
    region_masks,
    select_region,
    theta_e_edges,
)


def _lr(ds):
    return core_lr_on_cube(ds, box=10, n_boot=30, progress=False, core_radius=5.0, edge_radius=5.0)


def test_region_masks_geometry():
    m = region_masks(14, 5.0, 10)
    assert m["box"].sum() == 100 and m["disc"].sum() == 69  # pixels with r < 5 around the centre pixel
    assert not (m["ring"] & m["disc"]).any() and (m["ring"] | m["disc"]).sum() == 100
    # the box is the published one: offsets -5 .. 4 from the centre pixel
    rows = np.flatnonzero(m["box"].any(axis=1)) - 7
    assert rows.min() == -5 and rows.max() == 4
    px = np.arange(2 * 14 * 14, dtype=float).reshape(1, -1)
    assert select_region(px, 14, m["disc"]).shape == (1, 2 * 69)


def test_arcs_only_in_the_ring_disc_reads_half_ring_high():
    out = _lr(toy_cube(160, kind="ringonly", seed=3))
    assert out["regions"]["disc"]["auc"] == pytest.approx(0.5, abs=0.02)
    assert out["regions"]["ring"]["auc"] > 0.9
    assert out["regions"]["box"]["auc"] > 0.9  # the published box sees the ring's arc light
    assert out["plain"] is out["regions"]["disc"]  # the gate reads the disc by default


def test_core_only_arcs_fail_the_disc_gate():
    out = _lr(toy_cube(160, kind="core", seed=3))
    assert out["regions"]["disc"]["auc"] > 0.9
    assert out["edge_probe"]["frac_sharp"] == 0.0  # a smooth blob has no edge


def test_hard_masked_cube_passes_disc_and_the_edge_probe_flags_it():
    out = _lr(toy_cube(160, kind="blob", seed=3, hard_mask=5.0))
    assert out["regions"]["disc"]["auc"] == pytest.approx(0.5, abs=0.02)
    assert out["edge_probe"]["frac_sharp"] > 0.9 and out["edge_probe"]["radius_px"] == 5
    smooth = _lr(toy_cube(160, kind="blob", seed=3))
    assert smooth["edge_probe"]["frac_sharp"] == 0.0 and smooth["regions"]["disc"]["auc"] > 0.9


def test_edge_probe_on_a_taper_is_quiet_and_on_a_hard_edge_is_loud():
    side = 20
    o = np.arange(side) - side // 2
    r = np.hypot(o[:, None], o[None, :])
    blob = np.exp(-0.5 * (r / 3.0) ** 2)
    taper = blob * 0.5 * (1 + np.tanh((r - 5) / 1.0))
    hard = blob * (r >= 5)
    ctrl = np.zeros((3, 1 * side * side))
    for img, expect in ((taper, 0.0), (hard, 1.0)):
        lens = np.tile(img.ravel(), (3, 1))
        means = edge_annulus_means(lens, ctrl, side)
        assert means.shape == (3, edge_annuli(side)) == (3, 9)  # annuli 0..8 inside a 20-px square
        got = mask_edge_probe(means)
        assert got["frac_sharp"] == expect


def test_theta_e_bins_follow_the_priors():
    assert theta_e_edges(0.5, 2.5) == (0.5, 0.9, 1.3, 1.7, 2.1, 2.5)


def test_every_theta_e_table_of_diagnose_spans_the_cube_prior():
    """core LR, core flux and inner-image tables all bin theta_E over the cube's own prior."""
    import json

    from lensarray.diagnostics.audit import diagnose

    ds = toy_cube(96, kind="ring", seed=5)
    cfg = json.loads(ds.attrs["config"])
    lo, hi = 0.8, 2.6  # not the default edges (0.5-3"): the tables must follow the recorded prior
    cfg["lens"].update(theta_e_min=lo, theta_e_max=hi)
    ds.attrs["config"] = json.dumps(cfg)
    res, _ = diagnose(ds, n_boot=20, progress=False, ablation=None)
    tables = [
        res["core_lr"]["by_theta_e"],
        res["inner_image"]["by_theta_e"],
        *(b["by_theta_e"] for b in res["core_flux"]["bands"].values()),
    ]
    for rows in tables:
        assert rows[0]["lo"] == pytest.approx(lo) and rows[-1]["hi"] == pytest.approx(hi)


def test_core_lr_region_is_validated_in_one_line():
    with pytest.raises(ConfigError) as exc:
        RunConfig().replace(**{"diagnostics.core_lr_region": "square"}).validate()
    line = [s for s in str(exc.value).splitlines() if "core_lr_region" in s]
    assert len(line) == 1 and "disc, box, ring" in line[0]


def test_gate_uses_the_configured_region(tmp_path):
    from lensarray.diagnostics.audit import diagnose

    ds = toy_cube(96, kind="ringonly", seed=5)
    res, _ = diagnose(ds, n_boot=20, progress=False, ablation=None)
    gates = {g["name"]: g for g in res["gates"]}
    assert gates["core_lr_auc"]["status"] == "pass" and gates["mask_edge"]["status"] == "fail"
    assert gates["null_identity"]["status"] == "not run" and gates["null_identity"]["passed"] is None
    cfg = RunConfig().replace(**{"diagnostics.core_lr_region": "box", "run.n_pairs": 96})
    res, _ = diagnose(ds, n_boot=20, progress=False, ablation=None, config=cfg)
    g = next(g for g in res["gates"] if g["name"] == "core_lr_auc")
    assert g["status"] == "fail" and "box" in g["description"]
