"""A click group whose sub-commands are imported only when used.

``semcom edge run`` must not import the cloud's web stack (and an edge box does not even have
it installed), so sub-commands are named by import path and loaded on demand.
"""

from __future__ import annotations

import importlib
from typing import Any

import click


class LazyGroup(click.Group):
    """``lazy`` maps a sub-command name to ``"module.path:attribute"``."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                missing = exc.name or str(exc)
                return _unavailable(cmd_name, missing)
            command = getattr(module, attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


def _unavailable(name: str, missing: str) -> click.Command:
    """A stand-in that explains which extra to install, instead of a traceback."""
    extra = {"edge": "edge", "cloud": "cloud", "sim": "sim"}.get(name, "all")

    @click.command(
        name,
        help=f"(unavailable: needs {missing!r}; install with pip install 'semcom[{extra}]')",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    def stub() -> None:
        raise click.ClickException(
            f"'semcom {name}' needs the Python package {missing!r}, which is not installed. "
            f"Install it with: pip install 'semcom[{extra}]'"
        )

    return stub
