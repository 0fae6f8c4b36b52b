"""Layered settings for the edge and cloud configs: YAML file < environment < flags.

Only plain dicts here (no validation library): each side validates the merged dict with its
own model. ``SEMCOM_EDGE__DETECTOR__IMGSZ=320`` (prefix ``SEMCOM_EDGE__``) becomes
``{"detector": {"imgsz": 320}}``, values parsed as YAML scalars. :func:`layered_origins` also
says which layer set each value, so that an error names the file, the environment variable or
the flag it came from (:func:`describe_errors`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


#: where a value came from, by its key path: "config file X", "environment variable Y", ...
Origins = dict[tuple[str, ...], str]


def _env_names(prefix: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Dotted key -> the variable that sets it."""
    return {k[len(prefix) :].lower().replace("__", "."): k for k in environ if k.startswith(prefix)}


def env_overrides(prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    names = _env_names(prefix, environ)
    return nest({key: yaml.safe_load(environ[name]) for key, name in names.items()})


def _leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, path)
        else:
            yield path


def _record(
    origins: Origins, tree: Mapping[str, Any], label: Callable[[tuple[str, ...]], str]
) -> None:
    """``tree``'s values win over what earlier layers set at, above or below their paths."""
    for path in _leaves(tree):
        for old in [k for k in origins if k[: len(path)] == path or path[: len(k)] == k]:
            del origins[old]
        origins[path] = label(path)


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
    return layered_origins(path, env_prefix, environ, overrides)[0]


def layered_origins(
    path: Path | None,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], Origins]:
    """:func:`layered`, and where each value came from."""
    environ = os.environ if environ is None else environ
    origins: Origins = {}
    data = read_yaml(path) if path is not None else {}
    _record(origins, data, lambda _key: f"in {path}")
    names = _env_names(env_prefix, environ)
    env = env_overrides(env_prefix, environ)
    _record(origins, env, lambda key: f"from environment variable {names['.'.join(key)]}")
    flags = nest({k: v for k, v in (overrides or {}).items() if v is not None})
    _record(origins, flags, lambda _key: "from the command line")
    return merge(merge(data, env), flags), origins


def _origin(loc: Sequence[object], origins: Origins) -> str | None:
    """The origin of the value an error is about: the longest recorded key whose parts appear
    in ``loc`` in order (``loc`` may hold a union's tag or a list index between them)."""
    parts = [str(p) for p in loc]

    def within(key: tuple[str, ...]) -> bool:
        rest = iter(parts)
        return bool(parts) and parts[0] == key[0] and all(k in rest for k in key)

    found = [key for key in origins if within(key)]
    if found:
        return origins[max(found, key=len)]
    # An error about a mapping as a whole (a validator of ``model_kwargs``) whose entries were
    # set one by one: every layer that set an entry of it.
    below = {
        origins[key]
        for key in origins
        if parts and any(within(key[:n]) and key[n - 1] == parts[-1] for n in range(1, len(key)))
    }
    return ", ".join(sorted(below)) if below else None


def describe_errors(errors: Iterable[Mapping[str, Any]], origins: Origins | None = None) -> str:
    """One line for a list of validation errors (``loc`` + ``msg`` items, as pydantic gives),
    each followed by where its value came from when ``origins`` knows."""
    out = []
    for err in errors:
        loc = err["loc"]
        text = f"{'.'.join(str(p) for p in loc) or '(top)'}: {err['msg']}"
        origin = _origin(loc, origins) if origins else None
        out.append(f"{text} ({origin})" if origin else text)
    return "; ".join(out)
