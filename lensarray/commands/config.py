"""Write a run configuration as TOML, every field with its meaning and allowed values.

`--dump` writes the embedded default (a starting point for a run file); with CONFIG the file is
validated (every problem reported, one line each) and written back complete, defaults filled in.

examples:
  lensarray config --dump > run.toml
  lensarray config run.toml --out effective.toml
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ._common import BadInputError

NAME = "config"
HELP = "write the default (--dump) or a validated configuration as TOML with each field's doc and range"

__all__ = ["config_toml", "allowed"]


def add_arguments(p) -> None:
    p.add_argument("config", nargs="?", help="TOML run configuration to validate and complete")
    p.add_argument("--dump", action="store_true", help="write the embedded default configuration")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output (refused if it exists)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for every printable value
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def allowed(f: dataclasses.Field) -> str:
    """The allowed values of a configuration field, as the validation states them."""
    meta = f.metadata
    if meta.get("range"):
        lo, hi = meta["range"]
        return f"[{lo}, {hi}]"
    if meta.get("choices"):
        from ..config import field_default

        kind = "items from" if isinstance(field_default(f), list) else "one of"
        return f"{kind} {', '.join(map(str, meta['choices']))}"
    if meta.get("item_range"):
        lo, hi = meta["item_range"]
        return f"numbers in [{lo}, {hi}]"
    if f.type in (bool, "bool"):
        return "true or false"
    return ""


def config_toml(cfg) -> str:
    """``cfg`` as a complete TOML document, each section and field preceded by its documentation.

    Parameters
    ----------
    cfg
        A :class:`lensarray.config.RunConfig` (storage fields included: they are empty by default
        and never stored in a cube).
    """
    lines = [
        "# lensarray run configuration (every field; `lensarray config --dump` writes the default)",
        "# Each field: its meaning, then the allowed values; a file may give any subset.",
    ]
    for sec in dataclasses.fields(cfg):
        section = getattr(cfg, sec.name)
        lines += ["", f"[{sec.name}]", f"# {(type(section).__doc__ or '').strip().splitlines()[0]}"]
        for f in dataclasses.fields(section):
            note = f.metadata.get("doc", "")
            rule = allowed(f)
            lines.append(f"# {note}" + (f"; allowed: {rule}" if rule else ""))
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    from ..config import RunConfig, load_config

    if args.dump == bool(args.config):
        raise BadInputError("give either --dump (the default) or a CONFIG file to validate")
    cfg = RunConfig().validate() if args.dump else load_config(args.config)  # ConfigError: cli.main prints it
    text = config_toml(cfg)
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise BadInputError(f"--out {str(out)!r} exists: pass --overwrite to replace it")
        out.write_text(text)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
