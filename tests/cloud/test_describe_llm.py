"""The LLM describer with the real ``openai`` client against a local OpenAI-compatible server.

The server (:class:`tests.cloud.describe_fixtures.FakeOpenAI`, uvicorn on port 0) checks each
request for the metadata, PNG images and the strict JSON schema, and answers from a script:
valid replies, malformed JSON, schema violations, HTTP errors and timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.engine import Engine

from cloud import schema
from cloud.db import open_database
from cloud.describe.config import DescriberConfig
from cloud.describe.context import ContextSettings, Window, build_context
from cloud.describe.errors import DescribeFailed
from cloud.describe.jobs import JobState
from cloud.describe.llm import LlmDescriber
from cloud.describe.metrics import DescriberMetrics
from cloud.describe.runner import DescribeWorker
from cloud.describe.store import DescriptionStore
from tests.cloud.api_fixtures import LiveServer
from tests.cloud.describe_fixtures import (
    CAMERA,
    STOPPED,
    T0,
    FakeOpenAI,
    PngCrops,
    S,
    Step,
    fill_scene,
    reply,
)

WINDOW = Window(CAMERA, T0, T0 + 60 * S)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    server = FakeOpenAI()
    with LiveServer(server.app()) as live:
        yield server, f"{live.url}/v1"


@pytest.fixture
def llm(fake: tuple[FakeOpenAI, str]) -> Iterator[FakeOpenAI]:
    server, _ = fake
    server.script.clear()
    server.requests.clear()
    server.problems.clear()
    yield server
    assert server.problems == []  # every request carried metadata, PNGs and the schema


@pytest.fixture
def engine(tmp_path: object) -> Iterator[Engine]:
    e = open_database(f"sqlite:///{tmp_path}/c.db")
    fill_scene(e)
    yield e
    e.dispose()


def config(url: str, **changes: object) -> DescriberConfig:
    values: dict[str, object] = {
        "base_url": url, "model": "fake-vlm", "api_key": "sk-test", "backoff_s": 0.0,
        "timeout_s": 5.0, "max_attempts": 3, "max_images": 3,
    }  # fmt: skip
    values.update(changes)
    return DescriberConfig.model_validate(values)


def describe(engine: Engine, cfg: DescriberConfig, registry: CollectorRegistry) -> object:
    async def main() -> object:
        describer = LlmDescriber(cfg, DescriberMetrics(registry))
        try:
            ctx = build_context(engine, WINDOW, ContextSettings(max_images=cfg.max_images))
            return await describer.describe(ctx, await PngCrops().png_for(ctx.image_ids))
        finally:
            await describer.aclose()

    return asyncio.run(main())


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_request_carries_images_metadata_and_the_schema(
    llm: FakeOpenAI, fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    registry = CollectorRegistry()
    done = describe(engine, config(fake[1]), registry)
    assert len(llm.requests) == 1
    assert FakeOpenAI.images(llm.requests[0]) == 3
    assert done.describer == "fake-vlm"  # type: ignore[attr-defined]
    assert done.output.incidents[0].track_ids == [STOPPED]  # type: ignore[attr-defined]
    assert done.attempts == 1  # type: ignore[attr-defined]
    assert metric(registry, "semcom_describer_tokens_total", kind="prompt") == 1000
    assert metric(registry, "semcom_describer_tokens_total", kind="completion") == 100
    assert metric(registry, "semcom_describer_requests_total", outcome="ok") == 1


def test_sampling_parameters_follow_the_config(
    llm: FakeOpenAI, fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    describe(engine, config(fake[1]), CollectorRegistry())
    describe(
        engine,
        config(fake[1], temperature=None, token_limit_parameter="max_completion_tokens"),
        CollectorRegistry(),
    )
    usual, reasoning = llm.requests
    assert (usual["temperature"], usual["max_tokens"]) == (0, 1024)
    assert "max_completion_tokens" not in usual
    assert "temperature" not in reasoning
    assert "max_tokens" not in reasoning
    assert reasoning["max_completion_tokens"] == 1024


def test_bad_replies_are_retried_until_one_validates(
    llm: FakeOpenAI, fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    llm.script[:] = [
        Step("The traffic is light, {not json"),
        Step(reply(congestion="gridlock")),  # not in the enum
        Step(status=503),
        Step(reply(summary="Fine now.")),
    ]
    registry = CollectorRegistry()
    done = describe(engine, config(fake[1], max_attempts=4), registry)
    assert done.output.summary == "Fine now."  # type: ignore[attr-defined]
    assert done.attempts == 4  # type: ignore[attr-defined]
    assert done.usage.prompt_tokens == 3000  # type: ignore[attr-defined]  # 3 replies with usage
    for outcome in ("malformed", "invalid", "http_503", "ok"):
        assert metric(registry, "semcom_describer_requests_total", outcome=outcome) == 1


def test_timeouts_are_retried_and_exhaustion_is_a_clear_error(
    llm: FakeOpenAI, fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    llm.script[:] = [Step(reply(), delay_s=1.5), Step(reply(incidents=[{"kind": "x"}]))]
    registry = CollectorRegistry()
    with pytest.raises(DescribeFailed, match="after 2 attempts: invalid: schema violation"):
        describe(engine, config(fake[1], timeout_s=0.4, max_attempts=2), registry)
    assert metric(registry, "semcom_describer_requests_total", outcome="timeout") == 1
    llm.script[:] = [Step(status=401)]  # a bad key is not retried
    with pytest.raises(DescribeFailed, match="HTTP 401"):
        describe(engine, config(fake[1]), CollectorRegistry())
    assert len(llm.requests) == 3


def test_the_worker_records_failed_jobs_and_keeps_going(
    llm: FakeOpenAI, fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    """Malformed replies until the job fails (recorded with its error); the next job of the
    same running worker succeeds and is stored, with the crops it was shown."""
    cfg = config(fake[1], max_attempts=2, job_max_attempts=1, window_s=60, poll_s=0.05)
    crops = PngCrops()
    worker = DescribeWorker.build(cfg, engine, CollectorRegistry(), crops=crops)
    llm.script[:] = [Step("nope"), Step('```json\n{"counts": 3}\n```')]

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        try:
            for _ in range(200):  # the scheduler finds the closed minute; the job fails
                if worker.queue.counts().get("failed"):
                    break
                await asyncio.sleep(0.05)
            worker.queue.enqueue("again", {"camera_id": CAMERA, "from_us": T0,
                                           "to_us": T0 + 30 * S, "reason": "test"})  # fmt: skip
            for _ in range(200):
                if worker.queue.counts().get("done"):
                    break
                await asyncio.sleep(0.05)
            assert not task.done()  # bad replies never stopped the service
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await worker.aclose()

    asyncio.run(main())
    assert worker.queue.counts() == {"failed": 1, "done": 1}
    with engine.connect() as conn:
        failed = conn.execute(select(schema.jobs).where(schema.jobs.c.state == "failed")).one()
    assert failed.key == f"window:{CAMERA}:{T0}"
    assert "no valid description after 2 attempts" in failed.error
    assert "schema violation" in failed.error  # the last reply: fenced JSON, wrong shape
    page = DescriptionStore(engine).page(None, None, None, 10)
    [stored] = page.items
    assert stored.describer == "fake-vlm"
    assert (stored.from_us, stored.to_us) == (T0, T0 + 30 * S)
    assert stored.body["meta"]["reason"] == "test"
    assert stored.body["meta"]["images"] == crops.asked[-1]
    assert len(crops.asked[-1]) == 3


def test_a_job_interrupted_by_shutdown_goes_back_to_the_queue(
    llm: FakeOpenAI, fake: tuple[FakeOpenAI, str], engine: Engine
) -> None:
    cfg = config(fake[1], timeout_s=10)
    worker = DescribeWorker.build(cfg, engine, CollectorRegistry())
    worker.queue.enqueue("w", {"camera_id": CAMERA, "from_us": T0, "to_us": T0 + 60 * S})
    llm.script[:] = [Step(reply(), delay_s=0.4)]

    async def main() -> None:
        job = worker.queue.claim()
        assert job is not None
        task = asyncio.create_task(worker.run_job(job))
        while not llm.requests:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await worker.aclose()

    asyncio.run(main())
    assert worker.queue.counts() == {"queued": 1}
    restarted = DescribeWorker.build(cfg, engine, CollectorRegistry())

    async def again() -> JobState:
        job = restarted.queue.claim()
        assert job is not None
        assert job.attempts == 1  # the interrupted run did not count
        try:
            return await restarted.run_job(job)
        finally:
            await restarted.aclose()

    assert asyncio.run(again()) is JobState.DONE
