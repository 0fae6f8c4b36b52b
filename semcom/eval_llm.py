"""``semcom eval llm``: the paper's LLM question test, original vs rebuilt crops.

Crops come either from sources (video files, image folders) through the edge's own detector,
crop rule, encoder and the checkpoint's codec (:mod:`semcom.decoder_data`, cached), or from a
crop dataset file that command already built (``--crops``). Each sampled crop and its rebuild
by the decoder are asked the questions of ``--questions`` (:mod:`semcom.llm_questions`).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from edge.encoder_options import encoder_model_options

if TYPE_CHECKING:
    from cloud.decoder.checkpoint import LoadedDecoder
    from cloud.decoder.dataset import CropDataset


@click.command("llm")
@click.option(
    "--questions",
    "questions_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="YAML/JSON questions with what each answer is checked against "
    "(example: deploy/eval-llm-questions.yaml).",
)
@click.option(
    "--decoder",
    "checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Decoder checkpoint (`semcom cloud train-decoder` writes OUT/best.pt).",
)
@click.option("--source", "sources", multiple=True, help="Video file or image folder (repeatable).")
@click.option(
    "--crops",
    "crops_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A crop dataset (.npz) built before, instead of --source.",
)
@click.option("--base-url", required=True, envvar="SEMCOM_EVAL_BASE_URL",
              help="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1.")  # fmt: skip
@click.option("--model", required=True, envvar="SEMCOM_EVAL_MODEL",
              help="A multimodal model at that endpoint.")  # fmt: skip
@click.option("--api-key", envvar="SEMCOM_EVAL_API_KEY", help="[env: SEMCOM_EVAL_API_KEY]")
@click.option("--samples", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Crops asked about (one per object first).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Crop sampling seed.")
@click.option(
    "--all-crops",
    is_flag=True,
    help="Sample every crop, even of the objects the decoder was trained on (default: only "
    "held-out objects when the crops are the training data).",
)
@click.option("--detector", help="Detector model [default: the checkpoint's].")
@click.option("--encoder", help="timm model name; must be the checkpoint's (the default).")
@encoder_model_options
@click.option(
    "--sample-fps", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True
)
@click.option("--max-crops", type=click.IntRange(1), help="Collect at most this many crops.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--device", default="cpu", show_default=True, help="Decoder device.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
              default=60.0, show_default=True, help="Seconds per request.")  # fmt: skip
@click.option("--max-attempts", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report with every answer (JSON).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=True)
def llm(
    questions_path: Path,
    checkpoint: Path,
    sources: tuple[str, ...],
    crops_file: Path | None,
    base_url: str,
    model: str,
    api_key: str | None,
    samples: int,
    seed: int,
    all_crops: bool,
    detector: str | None,
    encoder: str | None,
    encoder_weights: Path | None,
    model_kwargs: dict[str, Any],
    encoder_preprocess: dict[str, Any],
    sample_fps: float,
    max_crops: int | None,
    cache_dir: Path | None,
    device: str,
    timeout_s: float,
    max_attempts: int,
    concurrency: int,
    out: Path | None,
    as_json: bool,
    progress: bool,
) -> None:
    """Ask an LLM the same questions about original and rebuilt crops; report both accuracies
    and their ratio (the paper: 93 % vs 89 %)."""
    from cloud.decoder.checkpoint import check_meta, load_decoder
    from cloud.decoder.dataset import CropDataset
    from cloud.decoder.errors import DecoderError
    from cloud.describe.schema import class_name
    from edge.errors import EdgeError
    from semcom.llm_questions import EvalError, OpenAIAsker, evaluate, load_questions, pick_crops
    from shared.errors import ProtocolError

    if bool(sources) == (crops_file is not None):
        raise click.UsageError("give --source (repeatable) or --crops, not both")
    try:
        questions = load_questions(questions_path)
        dec = load_decoder(checkpoint, device, encoder=encoder)
        if crops_file is not None:
            dataset = CropDataset.load(crops_file)
        else:
            encoder_options = {
                "weights": encoder_weights,
                "model_kwargs": model_kwargs,
                "preprocess": encoder_preprocess,
            }
            dataset = _build(dec, sources, detector, encoder_options, sample_fps, max_crops,
                             cache_dir, progress)  # fmt: skip
        m = dataset.meta
        check_meta(dec.meta, checkpoint, encoder=m.encoder, embed_dim=m.embed_dim,
                   random_init=m.random_init)  # fmt: skip
        if m.image_size != dec.meta.image_size:
            raise EvalError(
                f"the crops are {m.image_size} px, the decoder makes {dec.meta.image_size} px"
            )
    except (EvalError, DecoderError, EdgeError, ProtocolError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if len(dataset) == 0:
        raise click.ClickException("no crops in the sources: nothing to ask about")
    held_out = dataset.meta.key == dec.meta.dataset_key and not all_crops
    pool = dataset.split(dec.meta.val_fraction, dec.meta.split_seed)[1] if held_out else None
    groups = dataset.groups if pool is None else dataset.groups[pool]
    picked = pick_crops(groups, samples, seed)
    idx = picked if pool is None else pool[picked]
    originals = dataset.crops[idx]
    rebuilt = dec.decode(dataset.embeddings[idx])
    names = [class_name(int(c)) for c in dataset.classes[idx]]

    async def run() -> tuple[Any, int, int]:
        asker = OpenAIAsker(base_url, model, api_key, timeout_s, max_attempts, concurrency)
        with click.progressbar(
            length=len(idx), label="asking", file=sys.stderr if progress else _Null()
        ) as bar:
            try:
                result = await evaluate(
                    originals, rebuilt, names, questions, asker, lambda: bar.update(1)
                )
            finally:
                await asker.aclose()
        return result, asker.tokens.prompt, asker.tokens.completion

    result, prompt_tokens, completion_tokens = asyncio.run(run())
    if result.crops == 0:
        raise click.ClickException(
            f"no crop got valid answers ({result.failed} tried): is {model!r} at {base_url} "
            "a multimodal model that supports json_schema response formats?"
        )
    report = _report(dec, dataset, checkpoint, base_url, model, held_out, result.summary())
    report.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**report, "answers": result.answers}, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    from semcom.llm_questions import table

    click.echo(table(report))


def _build(
    dec: LoadedDecoder,
    sources: tuple[str, ...],
    detector: str | None,
    encoder_options: dict[str, Any],
    sample_fps: float,
    max_crops: int | None,
    cache_dir: Path | None,
    progress: bool,
) -> CropDataset:
    """The crops of the sources, made like the decoder's training data (same encoder/codec)."""
    from edge.config import DetectorConfig, TimmEncoderConfig
    from semcom.decoder_data import DEFAULT_CACHE, BuildSpec, build_dataset, default_threads

    meta = dec.meta
    model = detector or meta.detector_path
    if not model:
        raise click.UsageError("the checkpoint records no detector: give --detector")
    spec = BuildSpec(
        sources=sources,
        detector=DetectorConfig(model=model),
        encoder=TimmEncoderConfig.model_validate(
            {
                "name": meta.encoder,
                **encoder_options,
                "random_init": meta.random_init,
                "threads": default_threads(),
                "batch_size": 16,
            }
        ),
        codec=meta.codec_spec or meta.codec,
        image_size=meta.image_size,
        crop_scale=meta.crop_scale,
        sample_fps=sample_fps,
        max_crops=max_crops,
    )
    dataset, _path, _cached = build_dataset(spec, cache_dir or DEFAULT_CACHE, progress=progress)
    return dataset


def _report(
    dec: LoadedDecoder,
    dataset: CropDataset,
    checkpoint: Path,
    base_url: str,
    model: str,
    held_out: bool,
    summary: dict[str, Any],
) -> dict[str, Any]:
    random_init = dec.meta.random_init
    return {
        "model": model,
        "base_url": base_url,
        "decoder": str(checkpoint),
        "decoder_meta": dec.meta.describe(),
        "random_init_encoder": random_init,
        "note": "RANDOM-INIT encoder: the rebuilt crops come from embeddings without learned "
        "meaning" if random_init else "",
        "evaluated": "objects held out from the decoder's training" if held_out
        else "crops sampled from every object",
        "image_px": dec.meta.image_size,
        **summary,
    }  # fmt: skip


class _Null(io.StringIO):
    """Where a disabled progress bar writes."""
