"""Object storage against a real local S3 server (moto in server mode on 127.0.0.1)."""

import json

import numpy as np
import pytest

pytest.importorskip("moto")
pytest.importorskip("s3fs")

from _servers import make_bucket, moto_s3  # noqa: E402

from lensarray.cli import main  # noqa: E402
from lensarray.cube import VARIABLES, open_cube  # noqa: E402
from lensarray.storage import StorageError, check_destination, redact  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as endpoint:
        make_bucket(endpoint, "cubes")
        yield endpoint


@pytest.fixture
def cfg(make_cfg):
    """``cfg(n)``: n pairs in shards of 8, chunks of 4, 32-pixel stamps."""
    return lambda n=24, **over: make_cfg(n, shard=8, chunk=4, size=32, **over)


def test_build_open_verify_resume_on_s3(s3, tmp_path, cfg):
    from lensarray import pipeline
    from lensarray.commands.verify import verify_store
    from lensarray.store import DONE_VAR, completed_shards, open_group

    so = {"endpoint_url": s3}
    url = "s3://cubes/a.zarr"
    pipeline.build(cfg(), url, storage_options=so, progress=False)
    ds = open_cube(url, storage_options=so)
    assert ds.sizes["pair"] == 24 and float(ds["arc"].sum()) > 0
    assert verify_store(url, so, sample=3) == []
    # the cube's attrs hold no endpoint or credentials
    attrs = json.dumps(dict(ds.attrs))
    assert "testing-secret-value" not in attrs and "testing-key-id" not in attrs and s3 not in attrs
    # forget one shard, resume, same bytes
    ref = {k: ds[k].values for k in ("host", "arc", "theta_e")}
    g = open_group(url, so)
    g[DONE_VAR][1] = 0
    res = pipeline.build(cfg(), url, storage_options=so, progress=False, resume=True)
    assert res.shards_written == 1 and completed_shards(g).all()
    ds2 = open_cube(url, storage_options=so)
    for k, v in ref.items():
        np.testing.assert_array_equal(ds2[k].values, v)
    # same cube locally: identical arrays whatever the store
    local = str(tmp_path / "a.zarr")
    pipeline.build(cfg(), local, progress=False)
    dl = open_cube(local)
    for k in VARIABLES:
        np.testing.assert_array_equal(dl[k].values, ds2[k].values, err_msg=k)


def test_cli_build_and_inspect_on_s3(s3, capsys):
    rc = main(
        [
            "build",
            "--out",
            "s3://cubes/cli.zarr",
            "--pairs",
            "8",
            "--shard-pairs",
            "8",
            "--chunk-pairs",
            "4",
            "--workers",
            "0",
            "--endpoint-url",
            s3,
            "--no-progress",
        ]
    )
    assert rc == 0
    assert main(["inspect", "s3://cubes/cli.zarr", "--endpoint-url", s3, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pairs"] == 8 and info["shards_done"] == 1


def test_diagnose_on_s3(s3, cfg):
    from lensarray import pipeline
    from lensarray.diagnostics import diagnose

    so = {"endpoint_url": s3}
    pipeline.build(cfg(n=32), "s3://cubes/d.zarr", storage_options=so, progress=False)
    res, _ = diagnose(open_cube("s3://cubes/d.zarr", storage_options=so), progress=False, n_boot=10)
    assert res["n_pairs"] == 32


def test_missing_bucket_is_one_clear_line(s3, capsys):
    with pytest.raises(StorageError, match="bucket 'nope' does not exist"):
        check_destination("s3://nope/x.zarr", {"endpoint_url": s3})
    rc = main(["build", "--out", "s3://nope/x.zarr", "--pairs", "8", "--workers", "0", "--endpoint-url", s3])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "does not exist" in err[0]


def test_missing_credentials(s3, monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="no S3 credentials"):
        check_destination("s3://cubes/x.zarr", {"endpoint_url": s3})


def test_unreachable_endpoint(monkeypatch):
    import socket

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        check_destination("s3://cubes/x.zarr", {"endpoint_url": f"http://127.0.0.1:{port}"})


def test_redact_hides_secrets():
    opts = {"endpoint_url": "http://x", "key": "AKIA", "secret": "s3cr3t", "client_kwargs": {"aws_session_token": "t"}}
    red = redact(opts)
    assert "s3cr3t" not in json.dumps(red) and "AKIA" not in json.dumps(red) and red["endpoint_url"] == "http://x"


def test_one_writer_at_a_time_on_s3(s3, cfg):
    import time

    import boto3

    from lensarray import pipeline
    from lensarray.errors import StoreLockedError
    from lensarray.store import DONE_VAR, LOCK_NAME, StoreLock, open_group

    so = {"endpoint_url": s3}
    url = "s3://cubes/locked.zarr"
    pipeline.build(cfg(n=16), url, storage_options=so)
    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    key = f"locked.zarr/{LOCK_NAME}"
    with pytest.raises(client.exceptions.ClientError):
        client.head_object(Bucket="cubes", Key=key)  # released after the build
    # exclusive creation: a second writer is refused while the first holds the lock
    with StoreLock(url, so):
        with pytest.raises(StoreLockedError, match="being written"):
            StoreLock(url, so).acquire()
        with pytest.raises(StoreLockedError):
            pipeline.build(cfg(n=16), url, storage_options=so, resume=True)
    open_group(url, so)[DONE_VAR][1] = 0
    rec = {"host": "another-host", "pid": 4242, "since": time.time(), "time": time.time(), "nonce": "x"}
    client.put_object(Bucket="cubes", Key=key, Body=json.dumps(rec).encode())
    with pytest.raises(StoreLockedError, match="another-host, pid 4242"):
        pipeline.build(cfg(n=16), url, storage_options=so, resume=True)
    rec["time"] = time.time() - 3600  # not refreshed for an hour: stale, taken over
    client.put_object(Bucket="cubes", Key=key, Body=json.dumps(rec).encode())
    assert pipeline.build(cfg(n=16), url, storage_options=so, resume=True).shards_written == 1


def test_overwrite_on_s3_never_removes_foreign_objects(s3, cfg):
    import boto3

    from lensarray import pipeline
    from lensarray.store import StoreExistsError

    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    client.put_object(Bucket="cubes", Key="mine/thesis.tex", Body=b"\\documentclass")
    with pytest.raises(StoreExistsError, match="refusing to remove"):
        pipeline.build(cfg(n=8), "s3://cubes/mine", storage_options={"endpoint_url": s3}, overwrite=True)
    assert client.get_object(Bucket="cubes", Key="mine/thesis.tex")["Body"].read() == b"\\documentclass"
