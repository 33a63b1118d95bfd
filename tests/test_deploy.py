"""deploy/: the DaskCluster manifest validates against the CRD shipped in dask-kubernetes, and
the Job's command line parses with lensarray's own CLI parser."""

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _strip_none(obj):
    if isinstance(obj, dict):
        return {k: _strip_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_strip_none(v) for v in obj if v is not None]
    return obj


def _crd_schema(kind_file: str) -> dict:
    import dask_kubernetes

    crd_dir = (
        Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm" / "dask-kubernetes-operator" / "crds"
    )
    crd = yaml.safe_load((crd_dir / kind_file).read_text())
    return _strip_none(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]), crd


def test_daskcluster_manifest_matches_crd_schema():
    schema, crd = _crd_schema("daskcluster.yaml")
    manifest = yaml.safe_load((DEPLOY / "daskcluster.yaml").read_text())
    assert manifest["apiVersion"] == f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}"
    assert manifest["kind"] == crd["spec"]["names"]["kind"]
    jsonschema.validate(manifest, schema)


def test_crd_schema_rejects_a_broken_manifest():
    schema, _ = _crd_schema("daskcluster.yaml")
    manifest = yaml.safe_load((DEPLOY / "daskcluster.yaml").read_text())
    del manifest["spec"]["scheduler"]["service"]  # required by the CRD
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)
    manifest = yaml.safe_load((DEPLOY / "daskcluster.yaml").read_text())
    manifest["spec"]["worker"]["replicas"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)


def _job():
    return yaml.safe_load((DEPLOY / "build-job.yaml").read_text())


def test_job_takes_credentials_from_a_secret():
    job = _job()
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "lensarray-s3"
        assert "value" not in env[key]
    cluster = yaml.safe_load((DEPLOY / "daskcluster.yaml").read_text())
    wenv = {e["name"]: e for e in cluster["spec"]["worker"]["spec"]["containers"][0]["env"]}
    assert wenv["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "lensarray-s3"


def test_job_command_parses_with_the_real_cli():
    from lensarray.cli import make_parser
    from lensarray.commands.build import config_from_args

    args = _job()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "lensarray"
    ns = make_parser().parse_args(args[1:])
    assert ns.command == "build" and ns.resume and ns.out.startswith("s3://")
    cluster = yaml.safe_load((DEPLOY / "daskcluster.yaml").read_text())
    # the Job points at the operator's scheduler Service for this DaskCluster
    assert ns.scheduler.startswith(f"tcp://{cluster['metadata']['name']}-scheduler.")
    cfg = config_from_args(ns)  # the configuration it asks for is valid
    assert cfg.run.n_pairs == 200000 and cfg.run.shard_pairs % cfg.run.chunk_pairs == 0


def test_image_dask_config_keeps_the_worker_malloc_settings():
    import yaml

    from lensarray.cluster import WORKER_MALLOC_ENV

    conf = yaml.safe_load((DEPLOY / "dask.yaml").read_text())
    assert conf["distributed"]["nanny"]["pre-spawn-environ"] == WORKER_MALLOC_ENV
    assert "COPY deploy/dask.yaml /etc/dask/" in (DEPLOY / "Dockerfile").read_text()


def test_local_cluster_workers_get_the_malloc_settings():
    import os

    from distributed import Client

    from lensarray.cluster import WORKER_MALLOC_ENV, local_cluster

    with (
        local_cluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        env = next(iter(client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC_ENV}).values()))
        zarr_threads = next(iter(client.run(lambda: __import__("zarr").config.get("threading.max_workers")).values()))
    assert env == {k: str(v) for k, v in WORKER_MALLOC_ENV.items()}
    assert zarr_threads == 1  # zarr's codec pool has the worker's one thread, not one per core


def test_make_cluster_spec_from_config_validates_against_the_crd():
    from lensarray.cluster import WORKER_MALLOC_ENV, make_cluster_spec
    from lensarray.config import RunConfig

    schema, crd = _crd_schema("daskcluster.yaml")
    cfg = RunConfig().replace(
        **{
            "cluster.image": "registry.example/lensarray:9.9",
            "cluster.workers": 5,
            "cluster.memory_limit": "3GiB",
            "cluster.threads_per_worker": 2,
            "cluster.k8s_secret": "my-s3",
        }
    )
    spec = make_cluster_spec(cfg)
    jsonschema.validate(_strip_none(spec), schema)  # the exact spec KubeCluster is given
    assert spec["apiVersion"] == f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}"
    worker = spec["spec"]["worker"]
    assert worker["replicas"] == 5
    for role in (worker, spec["spec"]["scheduler"]):
        (c,) = role["spec"]["containers"]
        assert c["image"] == "registry.example/lensarray:9.9"
    (c,) = worker["spec"]["containers"]
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "3072Mi"}, "limits": {"cpu": "2", "memory": "3072Mi"}}
    env = {e["name"]: e for e in c["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # from the Secret, never a value
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "my-s3", "key": key} and "value" not in env[key]
    for key, value in WORKER_MALLOC_ENV.items():
        assert env[key]["value"] == str(value)
    for key in ("ZARR_THREADING__MAX_WORKERS", "ZARR_CODEC_PIPELINE__MAX_WORKERS"):
        assert env[key]["value"] == "2"  # the worker's --nthreads
    args = c["args"]
    assert args[:2] == ["dask", "worker"] and args[args.index("--memory-limit") + 1] == "3GiB"
    assert args[args.index("--nthreads") + 1] == "2"
    # and the CRD would refuse a broken variant of it (the validation can fail)
    bad = _strip_none(make_cluster_spec(cfg))
    bad["spec"]["worker"]["replicas"] = "five"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_make_cluster_spec_refuses_a_bad_memory_limit():
    from lensarray.cluster import ClusterError, make_cluster_spec
    from lensarray.config import RunConfig

    with pytest.raises(ClusterError, match="cluster.memory_limit"):
        make_cluster_spec(RunConfig().replace(**{"cluster.memory_limit": "plenty"}))
