"""Every command that builds an encoder takes the same encoder flags (Click introspection),
and they reach the encoder's config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from semcom.cli import cli

#: the flags of :mod:`edge.encoder_options` and the model name
ENCODER_FLAGS = {"--encoder", "--encoder-weights", "--model-kwargs", "--encoder-preprocess"}
#: the commands that build an encoder (a new one must be added here, or the test says so)
BUILDERS = {
    "bench edge",
    "bench fidelity",
    "cloud train-decoder",
    "codec fit",
    "demo",
    "edge embed-sample",
    "edge export",
    "edge export-encoder",
    "edge run",
    "edge show-config",
    "eval llm",
    "eval tracks",
    "eval reconstruction",
    "sim emulate",
    "sim run",
}


def _commands(
    group: click.Group, ctx: click.Context, path: str = ""
) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        full = f"{path} {name}".strip()
        if isinstance(command, click.Group):
            yield from _commands(command, ctx, full)
        else:
            yield full, command


def _flags(command: click.Command) -> set[str]:
    return {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts}


def test_every_command_that_builds_an_encoder_has_the_encoder_flags() -> None:
    with click.Context(cli) as ctx:
        commands = dict(_commands(cli, ctx))
    unavailable = [p for p, c in commands.items() if (c.help or "").startswith("(unavailable")]
    if unavailable:
        pytest.skip(f"commands not installed here: {unavailable}")
    builders = {
        path
        for path, command in commands.items()
        if _flags(command) & {"--encoder", "--encoder-weights", "--random-init-encoder"}
    }
    assert builders == BUILDERS
    missing = {p: sorted(ENCODER_FLAGS - _flags(commands[p])) for p in BUILDERS}
    assert {p: m for p, m in missing.items() if m} == {}


def test_the_flags_reach_the_edge_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "edge", "show-config", "--source", "x.mp4", "--encoder", "mobilenetv2_100",
            "--model-kwargs", "pad_type=same", "--model-kwargs", "drop_rate=0.1",
            "--encoder-preprocess", "mean=0.5,0.5,0.5", "--encoder-preprocess", "size=192",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"pad_type": "same"' in result.output
    assert '"drop_rate": 0.1' in result.output
    assert '"mean": [\n        0.5,' in result.output
    assert '"size": 192' in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-kwargs", "pad_type"], "--model-kwargs takes KEY=VALUE, got 'pad_type'"),
        (["--model-kwargs", "num_classes=3"], "may not set 'num_classes'"),
        (["--encoder-preprocess", "shape=3"], "unknown key(s) shape"),
        (
            ["--encoder-preprocess", "std=0.5,0,0.5"],
            "encoder.timm.preprocess.std: Value error, every std value must be > 0 "
            "(from the command line)",
        ),
    ],
)
def test_bad_flags_are_one_clear_error(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["edge", "show-config", "--source", "x.mp4", *args])
    assert result.exit_code != 0
    assert message in result.output
