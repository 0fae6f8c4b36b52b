"""``semcom cloud alerts dead-letters``: the list, and a replay to a real HTTP receiver."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import CollectorRegistry

from cloud.alerts.config import AlertsConfig
from cloud.alerts.dispatcher import AlertDispatcher
from semcom.cli import cli
from tests.alerts.conftest import Catalog, Receiver


def test_list_and_replay(catalog: Catalog, receiver: Receiver, tmp_path: Path) -> None:
    alerts = {
        "start_at": "beginning",
        "rules": [{"name": "crossings", "kinds": "line_crossing", "targets": ["ops"]}],
        "webhooks": {"ops": {"url": receiver.url, "secret": "receiver-secret", "max_attempts": 1}},
    }
    receiver.statuses = [500]
    event = catalog.add_event()
    dispatcher = AlertDispatcher(
        AlertsConfig.model_validate(alerts), catalog.engine, CollectorRegistry()
    )

    async def step() -> None:
        await dispatcher.step()
        await dispatcher.aclose()

    asyncio.run(step())
    config = tmp_path / "cloud.yaml"
    config.write_text(
        f"database: {catalog.engine.url.render_as_string(hide_password=False)}\n"
        "alerts:\n"
        "  rules: [{name: crossings, kinds: line_crossing, targets: [ops]}]\n"
        f"  webhooks: {{ops: {{url: '{receiver.url}'}}}}\n"
    )
    env = {"SEMCOM_CLOUD__ALERTS__WEBHOOKS__OPS__SECRET": "receiver-secret"}
    runner = CliRunner()
    args = ["cloud", "alerts", "dead-letters", "-c", str(config)]
    listed = runner.invoke(cli, args, env=env)
    assert listed.exit_code == 0, listed.output
    [line] = listed.output.splitlines()
    assert f"rule=crossings\ttarget=ops\tevent={event}\tattempts=1\tpending\tHTTP 500" in line
    replayed = runner.invoke(cli, [*args, "--replay", line.split("\t")[0]], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert "delivered to ops" in replayed.output
    assert [r.status for r in receiver.received] == [500, 200]
    again = runner.invoke(cli, [*args, "--replay", line.split("\t")[0]], env=env)
    assert again.exit_code == 1
    assert "was replayed at" in again.output
    assert runner.invoke(cli, [*args, "--pending"], env=env).output == "no dead letters\n"
