"""`lensarray plan` predicts what a build makes (pairs per split exactly, bytes on disk closely)
before building; `lensarray config --dump` writes a TOML that loads back to the default and
documents every field with its allowed values."""

import dataclasses
import json
import tomllib

import fsspec
import numpy as np
import pytest

from lensarray import pipeline
from lensarray.cli import main
from lensarray.commands.config import allowed
from lensarray.config import MIN_SNR_BIN_WIDTH, ConfigError, RunConfig, load_config
from lensarray.cube import SPLIT_NAMES, open_cube


def test_config_dump_loads_back_to_the_default_and_documents_every_field(tmp_path, capsys):
    assert main(["config", "--dump"]) == 0
    text = capsys.readouterr().out
    data = tomllib.loads(text)
    path = tmp_path / "default.toml"
    path.write_text(text)
    assert load_config(path).to_dict(include_secrets=True) == RunConfig().to_dict(include_secrets=True)
    lines = text.splitlines()
    cfg = RunConfig()
    for sec in dataclasses.fields(cfg):
        assert sec.name in data
        for f in dataclasses.fields(getattr(cfg, sec.name)):
            at = lines.index(
                next(
                    ln
                    for ln in lines
                    if ln.startswith(f"{f.name} = ") and lines.index(ln) > lines.index(f"[{sec.name}]")
                )
            )
            comment = lines[at - 1]
            assert comment.startswith("# ") and f.metadata["doc"] in comment, f"{sec.name}.{f.name}"
            if f.metadata.get("range"):
                lo, hi = f.metadata["range"]
                assert f"allowed: [{lo}, {hi}]" in comment
            if f.metadata.get("choices"):
                assert all(str(c) in comment for c in f.metadata["choices"])


def test_allowed_states_ranges_choices_and_item_ranges():
    fields = {f.name: f for f in dataclasses.fields(RunConfig().lens)}
    assert allowed(fields["theta_e_min"]) == "[0.3, 3.5]"
    assert allowed(fields["theta_e_prior"]) == "one of uniform, loguniform"
    bright = {f.name: f for f in dataclasses.fields(RunConfig().brightness)}
    assert allowed(bright["snr_edges"]) == "numbers in [0.0, 1000000.0]"


def test_config_validates_a_file_in_one_line_per_problem(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[lens]\ntheta_e_min = 99\n")
    assert main(["config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lens.theta_e_min = 99" in err and "[0.3, 3.5]" in err
    out = tmp_path / "x.toml"
    out.write_text("keep")
    good = tmp_path / "good.toml"
    good.write_text("[run]\nn_pairs = 10\n")
    assert main(["config", str(good), "--out", str(out)]) == 2  # never overwritten unless asked
    assert out.read_text() == "keep"
    assert main(["config", str(good), "--out", str(out), "--overwrite"]) == 0
    assert tomllib.loads(out.read_text())["run"]["n_pairs"] == 10


@pytest.mark.parametrize(
    "edges", [[0.0, 5e-324, 1.0, 2.0, 3.0], [0.8, 2.0, 2.0, 20.0, 50.0], [0.8, 0.8009, 8.0, 20.0, 50.0]]
)
def test_snr_edges_closer_than_the_narrowest_fillable_bin_are_refused(edges):
    with pytest.raises(ConfigError) as err:
        RunConfig().replace(**{"brightness.snr_edges": edges}).validate()
    line = str(err.value).splitlines()[-1]
    assert "brightness.snr_edges" in line and f"at least {MIN_SNR_BIN_WIDTH} apart" in line
    # a bin exactly the minimum wide, spelled as decimals, is accepted
    RunConfig().replace(**{"brightness.snr_edges": [0.002, 0.003, 8.0, 20.0, 50.0]}).validate()


def test_plan_predicts_the_build(tmp_path, capsys, make_cfg):
    cfg = make_cfg(96, shard=32, chunk=8, size=32, seed=11)
    toml = tmp_path / "run.toml"
    toml.write_text(
        '[run]\nn_pairs = 96\nshard_pairs = 32\nchunk_pairs = 8\nsize = 32\nseed = 11\n[cluster]\nkind = "none"\n'
    )
    assert load_config(toml).to_dict() == cfg.to_dict()
    assert main(["plan", str(toml), "--json", "--calibrate", "16", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert not list(tmp_path.glob("*.zarr"))  # nothing built
    url = str(tmp_path / "built.zarr")
    pipeline.build(cfg, url, progress=False)
    ds = open_cube(url)
    assert out["pairs"] == 96 and out["shards"] == 3
    split = ds["split"].values
    for code, name in enumerate(SPLIT_NAMES):
        assert out["splits"][name]["pairs"] == int((split == code).sum()), name
        assert out["splits"][name]["regions"] == np.unique(ds["region"].values[split == code]).size, name
    assert out["regions"] == np.unique(ds["region"].values).size
    on_disk = fsspec.filesystem("file").du(url)
    assert 0.6 < out["expected_bytes"] / on_disk < 1.5
    assert out["seconds_per_pair"] > 0 and out["expected_seconds"] > out["seconds_per_pair"] * 96 * 0.99


def test_plan_refuses_bad_input_before_work(capsys):
    assert main(["plan", "--pairs", "0"]) == 2
    assert "run.n_pairs = 0" in capsys.readouterr().err
    assert main(["plan", "--calibrate", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["plan", "--pairs", "ten"])
