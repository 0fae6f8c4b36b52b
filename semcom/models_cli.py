"""``semcom models``: list, pull, import, verify and locate the models semcom knows by name.

Results go to stdout (``list --json`` is machine-readable), progress and errors to stderr; the
exit status is non-zero on any failure or hash mismatch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from shared.models import ENV_MODELS_DIR, EntryStatus, ModelError, ModelStore, resolve

T = TypeVar("T")
pass_store = click.make_pass_decorator(ModelStore)


@click.group()
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=ENV_MODELS_DIR,
    default=None,
    help=f"Models directory [env {ENV_MODELS_DIR}; default: the user cache, "
    "e.g. ~/.cache/semcom/models].",
)
@click.pass_context
def models(ctx: click.Context, models_dir: Path | None) -> None:
    """Model weights by name: pull them once, import them on air-gapped sites, verify them.

    Config values such as `--detector yolo11n` name a model of `semcom models list`; the
    daemons never download, they find the file here.
    """
    try:
        ctx.obj = ModelStore(models_dir)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Every entry, its state and its facts.")
@click.option("--verify", "rehash", is_flag=True, help="Hash every provisioned file now.")
@pass_store
def list_(store: ModelStore, as_json: bool, rehash: bool) -> None:
    """Every model of the manifest and its state here.

    States: missing, pulled / imported (recorded and unchanged since), hash ok / hash mismatch
    (hashed now: with --verify, or because the file changed since it was recorded).
    """
    statuses = _guard(lambda: store.statuses(rehash=rehash))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "models_dir": str(store.root),
                    "lock_file": str(store.lock_path),
                    "models": [s.to_dict() for s in statuses],
                },
                indent=2,
            )
        )
    else:
        rows = [("NAME", "KIND", "FAMILY", "DIM", "STATE", "LICENCE")]
        for s in statuses:
            e = s.entry
            state = s.state + (" (import only)" if e.import_only and s.state == "missing" else "")
            rows.append((e.name, e.kind, e.family, str(e.dim or "-"), state, e.licence))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            click.echo(
                "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
            )
        click.echo(f"\nmodels dir: {store.root}", err=True)
    _fail_on_mismatch(statuses)


@models.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Download again even if a good copy is there.")
@pass_store
def pull(store: ModelStore, names: tuple[str, ...], force: bool) -> None:
    """Download NAMES (manifest names) into the models directory, recording their sha256.

    Needs the hub (huggingface.co or github.com); offline it fails at once, saying how to
    import the file instead.
    """
    from semcom.models_pull import pull as pull_one

    for name in names:
        result = _guard(functools.partial(pull_one, store, name, force=force))
        what = "already there" if result.already else "pulled"
        click.echo(f"{name}: {what} {result.path} sha256 {result.record.sha256}")


@models.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "name", required=True, help="The manifest name FILE is a copy of.")
@pass_store
def import_(store: ModelStore, file: Path, name: str) -> None:
    """Copy FILE in as model NAME (air-gapped sites); a file with the wrong sha256 is refused."""
    record = _guard(lambda: store.import_file(file, name))
    click.echo(f"{name}: imported {store.root / record.file} sha256 {record.sha256}")


@models.command()
@click.argument("names", nargs=-1)
@pass_store
def verify(store: ModelStore, names: tuple[str, ...]) -> None:
    """Hash every provisioned file (or NAMES) against the lock and the manifest."""
    statuses = _guard(lambda: store.statuses(names or None, rehash=True))
    shown = [s for s in statuses if names or s.state != "missing"]
    for s in shown:
        click.echo(f"{s.entry.name}: {s.state} ({s.detail}) {s.path}")
    if not shown:
        click.echo(f"nothing provisioned in {store.root}", err=True)
    _fail_on_mismatch(statuses)
    if names and any(s.state == "missing" for s in statuses):
        raise click.ClickException("some of the named models are not provisioned")


@models.command()
@click.argument("name")
@pass_store
def path(store: ModelStore, name: str) -> None:
    """Print the file of model NAME (hash-checked); fails if it is not provisioned."""
    resolved = _guard(lambda: resolve(name, store=store))
    click.echo(str(resolved.path))


def _fail_on_mismatch(statuses: list[EntryStatus]) -> None:
    bad = [s.entry.name for s in statuses if s.state == "hash mismatch"]
    if bad:
        raise click.ClickException(
            f"hash mismatch: {', '.join(bad)} (pull or import again from a good copy)"
        )


def _guard(call: Callable[[], T]) -> T:
    """Run ``call``, turning our typed errors into one line on stderr and exit status 1."""
    try:
        return call()
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
