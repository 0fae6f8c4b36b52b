"""Layered settings for the edge and cloud configs: YAML file < environment < flags.

Only plain dicts here (no validation library): each side validates the merged dict with its
own model. ``SEMCOM_EDGE__DETECTOR__IMGSZ=320`` (prefix ``SEMCOM_EDGE__``) becomes
``{"detector": {"imgsz": 320}}``, values parsed as YAML scalars.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


class SettingsError(ValueError):
    """A settings file that cannot be read or parsed (the message names the file)."""


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge; ``top`` wins."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def env_overrides(prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    dotted = {
        k[len(prefix) :].lower().replace("__", "."): yaml.safe_load(v)
        for k, v in environ.items()
        if k.startswith(prefix)
    }
    return nest(dotted)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return loaded or {}


def layered(
    path: Path | None,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """File, then environment, then dotted ``overrides`` (``None`` values are ignored)."""
    data = read_yaml(path) if path is not None else {}
    data = merge(data, env_overrides(env_prefix, os.environ if environ is None else environ))
    return merge(data, nest({k: v for k, v in (overrides or {}).items() if v is not None}))


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """One line for a list of validation errors (``loc`` + ``msg`` items, as pydantic gives)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in errors
    )
