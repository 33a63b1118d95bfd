"""fsspec / S3 options and destination checks, with credentials kept out of every output.

Options come from CLI flags, then the ``[storage]`` configuration section, then the environment
(``LENSARRAY_S3_ENDPOINT``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``; keys through the usual AWS
variables, read by botocore itself so they never pass through lensarray).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import BadInputError

if TYPE_CHECKING:
    import zarr

__all__ = [
    "StorageError",
    "add_storage_arguments",
    "storage_options_from",
    "check_destination",
    "check_source",
    "redact",
    "S3_TIMEOUTS",
    "zarr_array",
    "int_attr",
    "str_attr",
]

_SECRET_KEYS = re.compile(r"(secret|token|password|key)", re.I)


#: botocore settings of every S3 filesystem lensarray opens: metadata reads of an unreachable or
#: stalling endpoint fail within seconds, never hang (a crafted or mistyped URL held verify > 150 s).
S3_TIMEOUTS = {"connect_timeout": 5, "read_timeout": 20, "retries": {"max_attempts": 2}}

#: Largest metadata document (zarr.json) lensarray reads; a real cube's is ~60 KiB.
MAX_METADATA_BYTES = 16 * 2**20


class StorageError(BadInputError, OSError):
    """The destination cannot be used; the message is one line and holds no credentials."""


def add_storage_arguments(parser) -> None:
    """``--endpoint-url``, ``--profile``, ``--anon`` for commands that read or write stores."""
    s = parser.add_argument_group("storage (S3 and other fsspec URLs)")
    s.add_argument("--endpoint-url", help="S3 endpoint URL (default: AWS; env LENSARRAY_S3_ENDPOINT)")
    s.add_argument("--profile", help="AWS profile name for credentials")
    s.add_argument("--anon", action="store_true", default=None, help="anonymous (unsigned) S3 access")


def storage_options_from(args=None, cfg=None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """fsspec ``storage_options`` for an ``s3://`` URL (an empty dict means library defaults)."""
    env = os.environ if env is None else env
    sec = getattr(cfg, "storage", None)
    endpoint = (
        getattr(args, "endpoint_url", None)
        or (sec.endpoint_url if sec else "")
        or env.get("LENSARRAY_S3_ENDPOINT")
        or env.get("AWS_ENDPOINT_URL")
        or ""
    )
    profile = getattr(args, "profile", None) or (sec.profile if sec else "")
    anon = getattr(args, "anon", None)
    if anon is None:
        anon = bool(sec.anon) if sec else False
    opts: dict[str, Any] = {}
    if endpoint:
        opts["endpoint_url"] = endpoint
    if profile:
        opts["profile"] = profile
    if anon:
        opts["anon"] = True
    return opts


def zarr_array(group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of an opened store; a group in its place (not a lensarray cube) is a
    one-line :class:`StorageError` instead of an ``AttributeError`` deep inside a read."""
    import zarr

    member = group[name]
    if not isinstance(member, zarr.Array):
        raise StorageError(f"{group.store_path}/{name}: a zarr group; allowed an array (is this a lensarray cube?)")
    return member


def int_attr(group: zarr.Group, key: str, default: int) -> int:
    """The integer attribute ``key`` of an opened store (``default`` when absent); any other JSON
    value there is a one-line :class:`StorageError`."""
    value = group.attrs.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise StorageError(f"{group.store_path}: attribute {key} = {value!r}; allowed an integer")
    return value


def str_attr(group: zarr.Group, key: str, default: str) -> str:
    """The string attribute ``key`` of an opened store (``default`` when absent); any other JSON
    value there is a one-line :class:`StorageError`."""
    value = group.attrs.get(key, default)
    if not isinstance(value, str):
        raise StorageError(f"{group.store_path}: attribute {key} = {str(value)[:80]!r}; allowed a string")
    return value


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with every value under a secret-looking key replaced by ``'***'``."""
    if isinstance(obj, dict):
        return {k: ("***" if isinstance(k, str) and _SECRET_KEYS.search(k) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj


def _filesystem(url: str, storage_options: dict | None, label: str):
    """``(fs, path)`` for ``url``; S3 with lensarray's timeouts and no shared instance."""
    import fsspec

    if not str(url).strip():
        raise StorageError("--out '': allowed a local path or an fsspec URL (s3://bucket/key)")
    opts = dict(storage_options or {})
    if url.startswith("s3://"):
        opts.setdefault("skip_instance_cache", True)
        opts.setdefault("config_kwargs", S3_TIMEOUTS)
    try:
        fs, path = fsspec.core.url_to_fs(url, **opts)
    except (ImportError, ValueError, TypeError) as exc:
        raise StorageError(f"{label}: cannot open ({_one_line(exc)})") from None
    return keep_for_closing(fs), path


def check_destination(url: str, storage_options: dict | None = None) -> None:
    """Fail early, in one line, when ``url`` cannot be written: missing bucket, missing or
    refused credentials, unreachable endpoint, read-only local folder."""
    fs, path = _filesystem(url, storage_options, url)
    if "://" not in url or url.startswith("file://"):
        parent = os.path.dirname(os.path.abspath(path)) or "."
        top = parent
        while not os.path.exists(top):
            top = os.path.dirname(top)
        if not os.path.isdir(top):
            raise StorageError(f"{url}: {top} is a file, not a folder: choose another location")
        if top != parent:
            raise StorageError(f"{url}: folder {parent} does not exist: create it first")
        if not os.access(parent, os.W_OK):
            raise StorageError(f"{url}: location is read-only ({parent} is not writable)")
        return
    bucket = path.split("/", 1)[0]
    try:
        fs.ls(bucket, refresh=True)
    except FileNotFoundError:
        raise StorageError(f"{url}: bucket {bucket!r} does not exist") from None
    except PermissionError as exc:
        raise StorageError(f"{url}: access denied to bucket {bucket!r} ({_one_line(exc)})") from None
    except Exception as exc:  # botocore NoCredentialsError, EndpointConnectionError, ...
        name = type(exc).__name__
        if "Credential" in name or "credential" in str(exc):
            raise StorageError(
                f"{url}: no S3 credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, --profile, or --anon)"
            ) from None
        raise StorageError(f"{url}: cannot reach the S3 endpoint ({name}: {_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


#: Every S3 filesystem lensarray opened in this process, kept so that none is dropped (and its
#: session leaked) mid-run; :func:`close_s3_sessions` closes them.
_S3_FILESYSTEMS: list = []
_AT_EXIT: list = []


def keep_for_closing(fs):
    """Register an fsspec filesystem for :func:`close_s3_sessions` (S3 ones only); returns it."""
    if type(fs).__name__ == "S3FileSystem":
        if not _S3_FILESYSTEMS and not _AT_EXIT:
            import atexit

            # library users too: at exit, before s3fs's own finalizers (atexit runs LIFO) and
            # while the daemon event-loop threads still run
            atexit.register(close_s3_sessions)
            _AT_EXIT.append(True)
        _S3_FILESYSTEMS.append(fs)
    return fs


def close_s3_sessions() -> None:
    """Close the HTTP sessions of every S3 filesystem this process opened, while their event
    loops still run. Left to s3fs's finalizers, sessions of zarr's asynchronous filesystems (no
    loop of their own) and of any whose 0.1 s close timed out are never closed, and aiohttp
    prints "Unclosed client session" after every S3 command."""
    import gc
    import sys

    if "s3fs" not in sys.modules:
        return
    from fsspec.asyn import sync
    from s3fs import S3FileSystem

    def is_s3(o) -> bool:
        try:
            return isinstance(o, S3FileSystem)
        except ReferenceError:  # a weakref.proxy whose referent died: isinstance asks its __class__
            return False

    seen = {id(fs): fs for fs in _S3_FILESYSTEMS}
    seen.update({id(o): o for o in gc.get_objects() if is_s3(o)})
    for fs in seen.values():
        creator = getattr(fs, "_s3creator", None)
        if creator is None or getattr(fs, "_s3", None) is None:
            continue
        try:
            if fs.loop is not None and fs.loop.is_running():
                sync(fs.loop, creator.__aexit__, None, None, None, timeout=5)
            else:  # zarr's stores: an asynchronous filesystem whose session lives on zarr's loop
                from zarr.core.sync import sync as zarr_sync

                zarr_sync(creator.__aexit__(None, None, None), timeout=5)
        except Exception as exc:  # closing is best effort; the command's result stands
            logging.getLogger(__name__).debug("closing an S3 session: %s", exc)
        fs._s3 = None
    _S3_FILESYSTEMS.clear()


def check_source(url: str, storage_options: dict | None = None, *, what: str = "STORE") -> None:
    """Fail early, in one line and within seconds, when the store at ``url`` cannot be read: no
    such path, no credentials, unreachable endpoint, missing bucket or key, or a ``zarr.json``
    that is not a regular file of sane size (a FIFO there made a read hang forever)."""
    if not url:
        raise StorageError(f"{what} = '': allowed a local path or an fsspec URL")
    if "://" not in url or url.startswith("file://"):
        path = url.removeprefix("file://")
        if not os.path.exists(path):
            raise StorageError(f"{what} = {url!r}: no such path")
        meta = os.path.join(path, "zarr.json")
        if os.path.lexists(meta):
            import stat

            st = os.stat(meta)
            if not stat.S_ISREG(st.st_mode):
                raise StorageError(f"{what} = {url!r}: zarr.json is not a regular file")
            if st.st_size > MAX_METADATA_BYTES:
                raise StorageError(
                    f"{what} = {url!r}: zarr.json is {st.st_size} bytes; allowed <= {MAX_METADATA_BYTES}"
                )
        return
    fs, path = _filesystem(url, storage_options, f"{what} = {url!r}")
    try:
        info = fs.info(path.rstrip("/") + "/zarr.json")
    except FileNotFoundError:
        raise StorageError(f"{what} = {url!r}: no store there (no zarr.json)") from None
    except PermissionError as exc:
        raise StorageError(f"{what} = {url!r}: access denied ({_one_line(exc)})") from None
    except Exception as exc:  # botocore NoCredentialsError, EndpointConnectionError, timeouts ...
        name = type(exc).__name__
        if "Credential" in name or "credential" in str(exc):
            raise StorageError(
                f"{what} = {url!r}: no S3 credentials found (set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, --profile, or --anon)"
            ) from None
        raise StorageError(f"{what} = {url!r}: cannot reach the store ({name}: {_one_line(exc)})") from None
    size = info.get("size") or 0
    if size > MAX_METADATA_BYTES:
        raise StorageError(f"{what} = {url!r}: zarr.json is {size} bytes; allowed <= {MAX_METADATA_BYTES}")
