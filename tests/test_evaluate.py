"""Evaluation: metrics on planted scores with known answers; the baseline end to end; CLI."""

import json

import numpy as np
import pytest

from lensarray.cli import main
from lensarray.diagnostics.toycube import toy_cube
from lensarray.evaluation import ScoreTable, evaluate_scores, recall_at_fpr


@pytest.fixture(scope="module")
def cube():
    ds = toy_cube(400, kind="ring", size=32, seed=1, chunk_pairs=50)
    ds["split"] = ("pair", np.where(np.arange(400) % 4 == 0, 2, 0).astype(np.int8))
    ds["hard_negative"] = ("pair", np.where(np.arange(400) % 20 == 1, 2, 0).astype(np.int8))
    ds.attrs["shard_pairs"] = 50
    return ds


def _table(n, score_fn):
    pair = np.repeat(np.arange(n), 2)
    role = np.tile([1, 0], n)
    return ScoreTable(pair, role, score_fn(pair, role))


def test_perfect_and_random_scores(cube):
    perfect = evaluate_scores(cube, _table(400, lambda p, r: r + 0.0 * p), n_boot=20, split=None)
    # hard-negative lens stamps score 1 like lenses: AUC < 1 exactly by their share
    assert 0.95 < perfect.auc < 1.0
    assert perfect.hard_negatives["spiral"]["mean_score"] == pytest.approx(0.5)
    clean = evaluate_scores(cube, _table(400, lambda p, r: r * (cube["hard_negative"].values[p] == 0)), n_boot=20)
    assert clean.auc == 1.0 and clean.recall_at_fpr == 1.0
    rng = np.random.default_rng(0)
    rand = evaluate_scores(cube, _table(400, lambda p, r: rng.random(p.size)), n_boot=50)
    assert abs(rand.auc - 0.5) < 0.08 and rand.recall_at_fpr < 0.1
    lo, hi = rand.auc_ci95
    assert lo < rand.auc < hi
    assert rand.n_stamps == 200  # test split only
    as_json = json.loads(json.dumps(rand.to_dict()))
    assert as_json["auc"] == rand.auc and as_json["auc_ci95"] == list(rand.auc_ci95) and "anchors" not in as_json


def test_recall_at_fpr_known_answer():
    labels = np.array([0] * 100 + [1] * 10)
    scores = np.concatenate([np.arange(100) / 100, [0.995] * 4 + [0.5] * 6])
    assert recall_at_fpr(labels, scores, 0.01) == pytest.approx(0.4)


def test_completeness_tracks_snr(cube):
    snr = cube["arc_snr"].values
    res = evaluate_scores(cube, _table(400, lambda p, r: r * snr[p]), n_boot=0 or 10, split=None)
    comp = [row["completeness"] for row in res.by_arc_snr if row["n_pos"]]
    assert comp == sorted(comp)


def test_bad_scores_file(tmp_path, cube, capsys):
    import xarray as xr  # noqa: F401

    bad = tmp_path / "s.csv"
    bad.write_text("pair,score\n0,1\n")
    from lensarray.evaluation import load_scores

    with pytest.raises(ValueError, match="role"):
        load_scores(str(bad))


def test_baseline_end_to_end_cli(tmp_path, capsys):
    out = tmp_path / "c.zarr"
    assert (
        main(
            [
                "build",
                "--out",
                str(out),
                "--pairs",
                "300",
                "--shard-pairs",
                "100",
                "--chunk-pairs",
                "20",
                "--workers",
                "0",
                "--no-progress",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert main(["evaluate", str(out), "--baseline", "--out", str(tmp_path / "ev"), "--bootstrap", "20"]) == 0
    res = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert set(res) == {"baseline", "baseline_centre_masked"}
    for r in res.values():
        assert 0.0 <= r["auc"] <= 1.0 and r["n_pos"] > 0
    assert (tmp_path / "ev" / "completeness_baseline.png").stat().st_size > 5000
    assert main(["evaluate", str(out), "--baseline", "--out", str(tmp_path), "--fpr", "0.7"]) == 2


def test_hard_negatives_in_diagnose_and_anchors_in_evaluate(tmp_path, capsys, make_cfg):
    from test_ingest import _fits

    from lensarray import pipeline
    from lensarray.cube import open_cube
    from lensarray.diagnostics import diagnose

    url = str(tmp_path / "neg.zarr")
    cfg = make_cfg(200, shard=100, chunk=20, size=64, seed=12345, **{"negatives.fraction": 0.3})
    pipeline.build(cfg, url, progress=False)
    ds = open_cube(url)
    n_neg = int((ds["hard_negative"].values > 0).sum())
    assert 30 < n_neg < 90
    res, _ = diagnose(ds, progress=False, n_boot=10, ablation=None)
    assert res["core_lr_hard_negatives"]["n_hard_negative_pairs"] == n_neg
    assert 0.0 <= res["core_lr_hard_negatives"]["auc"] <= 1.0
    # hard-negative stamps are labelled non-lens in the stamps view
    st = ds.lensarray.stamps()
    assert not st["is_lens"].values[np.repeat(ds["hard_negative"].values > 0, 2)].any()
    for i in range(3):
        _fits(tmp_path / f"a{i}.fits", seed=i)
    assert (
        main(["ingest", *(str(tmp_path / f"a{i}.fits") for i in range(3)), "--out", str(tmp_path / "anch.zarr")]) == 0
    )
    assert (
        main(
            [
                "evaluate",
                url,
                "--baseline",
                "--anchors",
                str(tmp_path / "anch.zarr"),
                "--out",
                str(tmp_path / "ev"),
                "--bootstrap",
                "10",
            ]
        )
        == 0
    )
    out = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert out["baseline"]["anchors"]["n"] == 3
    assert (
        "ring" in out["baseline"]["hard_negatives"]
        or "spiral" in out["baseline"]["hard_negatives"]
        or "tidal" in out["baseline"]["hard_negatives"]
    )


def test_baseline_progress_is_opt_in(cube, capsys):
    """One bar per split while the baseline's features are computed, counting the split's stamps
    (300 train pairs and 100 test pairs of the 400: 600 and 200 stamps); none unless asked."""
    from lensarray.evaluation import baseline_scores

    baseline_scores(cube, max_train_pairs=1000)
    assert "baseline:" not in capsys.readouterr().err
    baseline_scores(cube, max_train_pairs=1000, progress=True)
    err = capsys.readouterr().err
    assert "baseline: train features" in err and "600/600" in err
    assert "baseline: test features" in err and "200/200" in err
