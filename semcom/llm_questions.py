"""Questions about crops for a multimodal LLM, asked and scored (``semcom eval llm``).

Does a multimodal LLM see the same in rebuilt crops as in the originals?

The paper's measurement (93 % of questions answered correctly on original crops, 89 % on crops
rebuilt from embeddings): the same questions (vehicle type, colour, count, position, ...) are
asked about each original crop and about its reconstruction by the cloud's decoder, blind
(one prompt, the model is not told which it sees), through any OpenAI-compatible endpoint
with a strict JSON-schema answer per image. Each question says what its answer is checked
against (``expected`` in the questions file, see ``deploy/eval-llm-questions.yaml``):

- ``{from: class}``: the detector's class of the crop (optionally mapped to accepted answers);
- ``{value: ...}``: one fixed answer (e.g. every crop is centred on its object);
- ``{from: original}``: no ground truth: the answer on the original crop is the reference,
  so only the rebuilt crop's *agreement* with it is measured.

Reported per question and overall (ground-truth questions only): accuracy on originals, on
rebuilt crops, and their ratio; and the agreement of the two answers over every question.
Original crops are the edge's crops at the decoder's output size, so both images have the
same pixels count: the comparison measures what the code and decoder lose, not resolution.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

logger = logging.getLogger(__name__)

SYSTEM_PROMPT: Final = (
    "You look at one small image cropped around a road user seen by a traffic camera (the "
    "road user is at the centre). Answer every question about the image with the JSON object "
    "the schema asks for; when unsure, give your best guess from the allowed answers."
)


class EvalError(Exception):
    """The evaluation cannot run (questions file, endpoint, data); the message says why."""


# ---------------------------------------------------------------- questions


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    from_: Literal["class", "original"] | None = Field(None, alias="from")
    value: str | None = None
    classes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="from: class: accepted answers per class name (default: the name itself).",
    )

    @model_validator(mode="after")
    def _one(self) -> Expected:
        if (self.from_ is None) == (self.value is None):
            raise ValueError("give exactly one of `from` (class | original) and `value`")
        return self

    @property
    def reference(self) -> str:
        return self.from_ or "value"


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    prompt: str = Field(min_length=1, max_length=1000)
    choices: list[str] | None = Field(None, min_length=2, max_length=50)
    expected: Expected


class QuestionSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    questions: list[Question] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _unique(self) -> QuestionSet:
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        return self


def load_questions(path: Path) -> QuestionSet:
    """Questions from a YAML or JSON file; :class:`EvalError` with the problem otherwise."""
    try:
        data = yaml.safe_load(path.read_text())
        return QuestionSet.model_validate(data)
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise EvalError(f"{path} is not YAML/JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise EvalError(f"invalid questions in {path}: {problems}") from None


def normalise(answer: str) -> str:
    return " ".join(answer.lower().replace(".", " ").replace(",", " ").split())


def answer_schema(questions: Sequence[Question]) -> dict[str, Any]:
    """Strict-mode JSON schema: one string property per question (an enum with choices)."""
    props: dict[str, Any] = {}
    for q in questions:
        props[q.id] = {"type": "string", "description": q.prompt}
        if q.choices:
            props[q.id]["enum"] = list(q.choices)
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


# ---------------------------------------------------------------- asking


@dataclass
class Tokens:
    prompt: int = 0
    completion: int = 0


class Asker(Protocol):
    async def ask(self, png: bytes, questions: Sequence[Question]) -> dict[str, str]:
        """One answer per question id; :class:`EvalError` when none could be had."""
        ...


class OpenAIAsker:
    """Asks over an OpenAI-compatible endpoint: one request per image, retried with backoff."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_s: float = 60.0,
        max_attempts: int = 3,
        concurrency: int = 4,
    ) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=0
        )
        self.model = model
        self.max_attempts = max_attempts
        self.slots = asyncio.Semaphore(concurrency)
        self.tokens = Tokens()

    async def aclose(self) -> None:
        await self.client.close()

    async def ask(self, png: bytes, questions: Sequence[Question]) -> dict[str, str]:
        import openai

        lines = [
            f"- {q.id}: {q.prompt}" + (f" (one of: {', '.join(q.choices)})" if q.choices else "")
            for q in questions
        ]
        url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        messages: Any = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Questions:\n" + "\n".join(lines)},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            },
        ]
        fmt: Any = {
            "type": "json_schema",
            "json_schema": {"name": "answers", "strict": True, "schema": answer_schema(questions)},
        }
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self.slots:
                    reply = await self.client.chat.completions.create(
                        model=self.model, messages=messages, response_format=fmt, temperature=0
                    )
                if reply.usage is not None:
                    self.tokens.prompt += reply.usage.prompt_tokens
                    self.tokens.completion += reply.usage.completion_tokens
                return parse_answers(reply.choices[0].message.content, questions)
            except openai.APIStatusError as exc:
                last = f"HTTP {exc.status_code}: {str(exc.message)[:200]}"
                if exc.status_code < 500 and exc.status_code not in (408, 409, 429):
                    break
            except (openai.APIConnectionError, EvalError, IndexError) as exc:
                last = str(exc) or type(exc).__name__
            if attempt < self.max_attempts:
                await asyncio.sleep(min(30.0, 2.0 ** (attempt - 1)) * (0.5 + random.random() / 2))
        raise EvalError(f"no valid answer after {self.max_attempts} attempt(s): {last}")


def parse_answers(content: str | None, questions: Sequence[Question]) -> dict[str, str]:
    """The answers in a reply; :class:`EvalError` for anything but one per question."""
    try:
        data = json.loads(content or "")
    except json.JSONDecodeError:
        raise EvalError(f"the reply is not JSON: {str(content)[:100]!r}") from None
    if not isinstance(data, dict):
        raise EvalError("the reply is not a JSON object")
    out = {}
    for q in questions:
        answer = data.get(q.id)
        if not isinstance(answer, str):
            raise EvalError(f"no answer to {q.id!r}")
        if q.choices and normalise(answer) not in {normalise(c) for c in q.choices}:
            raise EvalError(f"answer {answer!r} to {q.id!r} is not one of its choices")
        out[q.id] = answer
    return out


# ---------------------------------------------------------------- scoring


@dataclass
class QuestionScore:
    id: str
    reference: str
    asked: int = 0
    original_correct: int = 0
    rebuilt_correct: int = 0
    agree: int = 0

    def to_dict(self) -> dict[str, Any]:
        graded = self.reference != "original"
        return {
            "id": self.id,
            "reference": self.reference,
            "crops": self.asked,
            "original_accuracy": self.original_correct / self.asked if graded and self.asked
            else None,
            "rebuilt_accuracy": self.rebuilt_correct / self.asked if graded and self.asked
            else None,
            "agreement": self.agree / self.asked if self.asked else None,
        }  # fmt: skip


@dataclass
class EvalResult:
    scores: list[QuestionScore]
    crops: int  # answered for both images
    failed: int  # crops left out: no valid answer for one of the images
    answers: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        graded = [s for s in self.scores if s.reference != "original"]
        n = sum(s.asked for s in graded)
        orig = sum(s.original_correct for s in graded) / n if n else None
        rebuilt = sum(s.rebuilt_correct for s in graded) / n if n else None
        asked = sum(s.asked for s in self.scores)
        return {
            "crops": self.crops,
            "failed_crops": self.failed,
            "original_accuracy": orig,
            "rebuilt_accuracy": rebuilt,
            "ratio": rebuilt / orig if orig and rebuilt is not None else None,
            "agreement": sum(s.agree for s in self.scores) / asked if asked else None,
            "questions": [s.to_dict() for s in self.scores],
        }


def _correct(q: Question, answer: str, class_name: str, original: str) -> bool:
    e = q.expected
    got = normalise(answer)
    if e.from_ == "class":
        accepted = e.classes.get(class_name, [class_name])
        return got in {normalise(a) for a in accepted}
    if e.from_ == "original":
        return got == normalise(original)
    assert e.value is not None
    return got == normalise(e.value)


def png_bytes(crop: NDArray[np.uint8]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).save(out, format="PNG")
    return out.getvalue()


async def evaluate(
    originals: NDArray[np.uint8],
    rebuilt: NDArray[np.uint8],
    class_names: Sequence[str],
    questions: QuestionSet,
    asker: Asker,
    on_crop: Any = None,
) -> EvalResult:
    """Ask every question about each original and rebuilt crop (paired) and score them."""
    qs = questions.questions
    scores = [QuestionScore(q.id, q.expected.reference) for q in qs]
    result = EvalResult(scores, 0, 0)

    async def one(i: int) -> None:
        try:
            a, b = await asyncio.gather(
                asker.ask(png_bytes(originals[i]), qs), asker.ask(png_bytes(rebuilt[i]), qs)
            )
        except EvalError as exc:
            logger.warning("crop %d left out: %s", i, exc)
            result.failed += 1
            return
        finally:
            if on_crop is not None:
                on_crop()
        result.crops += 1
        result.answers.append({"crop": i, "class": class_names[i], "original": a, "rebuilt": b})
        for q, s in zip(qs, scores, strict=True):
            s.asked += 1
            s.original_correct += _correct(q, a[q.id], class_names[i], a[q.id])
            s.rebuilt_correct += _correct(q, b[q.id], class_names[i], a[q.id])
            s.agree += normalise(a[q.id]) == normalise(b[q.id])

    await asyncio.gather(*(one(i) for i in range(len(originals))))
    result.answers.sort(key=lambda r: int(r["crop"]))
    return result


def pick_crops(groups: NDArray[np.int64], n: int, seed: int) -> NDArray[np.int64]:
    """Up to ``n`` crop indices, one per object first (objects in random order), then more."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    firsts: list[int] = []
    rest: list[int] = []
    seen: set[int] = set()
    for i in order:
        (rest if int(groups[i]) in seen else firsts).append(int(i))
        seen.add(int(groups[i]))
    return np.asarray((firsts + rest)[:n], np.int64)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f} %"


def table(report: dict[str, Any]) -> str:
    lines = [
        f"model: {report['model']} at {report['base_url']}",
        f"decoder: {report['decoder_meta']}",
        f"crops: {report['crops']} asked twice (original, rebuilt), {report['evaluated']}"
        + (f"; {report['failed_crops']} left out (no valid answer)" if report["failed_crops"]
           else ""),
    ]  # fmt: skip
    if report["note"]:
        lines.append(f"NOTE: {report['note']}")
    lines.append(f"{'question':14} {'checked against':16} {'original':>9} {'rebuilt':>9} "
                 f"{'agree':>9}")  # fmt: skip
    for q in report["questions"]:
        lines.append(
            f"{q['id']:14} {q['reference']:16} {_pct(q['original_accuracy']):>9} "
            f"{_pct(q['rebuilt_accuracy']):>9} {_pct(q['agreement']):>9}"
        )
    ratio = report["ratio"]
    lines.append(
        f"{'overall':14} {'ground truth':16} {_pct(report['original_accuracy']):>9} "
        f"{_pct(report['rebuilt_accuracy']):>9} {_pct(report['agreement']):>9}"
        + (f"   ratio {ratio:.3f} (paper: 89 / 93 = 0.957)" if ratio is not None else "")
    )
    lines.append(f"tokens: {report['prompt_tokens']} prompt, {report['completion_tokens']} "
                 "completion")  # fmt: skip
    return "\n".join(lines)
