"""Training loop of the crop decoder over a cached :class:`CropDataset`.

Held-out validation (whole tracked objects, :meth:`CropDataset.split`) reports PSNR and SSIM
after every epoch; ``last.pt`` is written every epoch (with the optimizer, for ``resume``) and
``best.pt`` whenever validation SSIM improves. A time budget stops training inside an epoch,
validates and saves. The learning rate follows a cosine from ``lr`` to 5 % of it over the run,
measured by whichever ends it first: epochs or the time budget. CPU by default, CUDA when
present (``device="auto"``); seeded (torch and numpy).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cloud.decoder.checkpoint import DecoderMeta, check_meta, read_checkpoint, save_checkpoint
from cloud.decoder.dataset import CropDataset
from cloud.decoder.errors import DecoderMismatch
from cloud.decoder.losses import FrozenEncoder, LossWeights, ReconstructionLoss, default_weights
from cloud.decoder.metrics import per_crop_quality, to_tensor
from cloud.decoder.model import CropDecoder, DecoderSpec, parameter_count
from shared.version import software_version

logger = logging.getLogger(__name__)

WARMUP_STEPS = 50


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_minutes: float | None = None
    """Stop (validate, save) once this much training time (min) has passed."""
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    width: int = 16
    weights: LossWeights | None = None
    """Loss weights; None: :func:`default_weights` for the device."""
    encoder_weights: Path | None = None
    """Local weights of the frozen encoder (the consistency term); None: the HF cache."""
    encoder_model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """timm.create_model arguments of the frozen encoder, as the edges give them."""
    encoder_preprocess: Mapping[str, Any] = field(default_factory=dict)
    """Preprocessing overrides of the frozen encoder (size, mean, std, interpolation)."""
    progress: bool = True
    threads: int | None = None
    """torch CPU threads (process-wide); None: torch's default (every core). On a machine
    shared with other busy processes, 1 avoids threads waiting on each other at every
    operator: ten times faster there in our measurements, about 1.7x slower on an idle one."""


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    step: int
    train_loss: float
    psnr: float
    ssim: float
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    best: Path
    last: Path
    meta: DecoderMeta
    history: list[EpochResult]
    stopped: str
    """``epochs`` or ``time budget``."""
    train_crops: int
    val_crops: int
    seconds: float
    parameters: int


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def decode_all(
    model: Any, embeddings: NDArray[np.float32], device: str, batch: int = 256
) -> NDArray[np.uint8]:
    """Rebuild crops with ``model`` (switched to eval mode)."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(embeddings), batch):
            x = torch.from_numpy(np.ascontiguousarray(embeddings[i : i + batch])).to(device)
            y = (model(x).clamp(0, 1) * 255.0).round().to(torch.uint8)
            out.append(y.permute(0, 2, 3, 1).cpu().numpy())
    if not out:
        return np.zeros((0, model.spec.image_size, model.spec.image_size, 3), np.uint8)
    return np.concatenate(out)


def validate(
    model: Any, dataset: CropDataset, idx: NDArray[np.int64], device: str
) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM of the rebuilt held-out crops."""
    rebuilt = decode_all(model, dataset.embeddings[idx], device)
    psnr, ssim = per_crop_quality(rebuilt, dataset.crops[idx])
    return float(psnr.mean()), float(ssim.mean())


def _lr_factor(step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    cosine = 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return warm * cosine


@dataclass
class _Start:
    """Where a run starts: fresh, or from ``last.pt`` (``resume``)."""

    spec: DecoderSpec
    epoch: int = 0
    step: int = 0
    trained_s: float = 0.0
    best: DecoderMeta | None = None
    model_state: dict[str, Any] | None = None
    optimizer_state: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """Epochs of earlier runs (from ``train.json``)."""


def _start(dataset: CropDataset, out_dir: Path, width: int, resume: bool) -> _Start:
    d = dataset.meta
    fresh = _Start(DecoderSpec(d.embed_dim, d.image_size, width))
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if not resume:
        return fresh
    if not last_path.is_file():
        logger.warning("nothing to resume in %s: starting afresh", out_dir)
        return fresh
    old, model_state, optimizer_state = read_checkpoint(last_path)
    check_meta(
        old, last_path, encoder=d.encoder, embed_dim=d.embed_dim, random_init=d.random_init,
        codec=d.codec,
    )  # fmt: skip
    if old.image_size != d.image_size:
        raise DecoderMismatch("image size", d.image_size, old.image_size, last_path)
    if old.dataset_key != d.key:
        logger.warning("resuming %s on a different crop dataset than it started on", last_path)
    history: list[dict[str, Any]] = []
    try:
        history = list(json.loads((out_dir / "train.json").read_text())["history"])
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("no readable %s: earlier epochs are not listed", out_dir / "train.json")
    logger.info("resuming from %s: epoch %d, step %d", last_path, old.epoch, old.step)
    return _Start(
        spec=DecoderSpec.from_dict(old.spec),
        epoch=old.epoch,
        step=old.step,
        trained_s=old.trained_s,
        best=read_checkpoint(best_path)[0] if best_path.is_file() else None,
        model_state=model_state,
        optimizer_state=optimizer_state,
        history=history,
    )


def _meta(
    dataset: CropDataset, spec: DecoderSpec, settings: TrainSettings, weights: LossWeights
) -> DecoderMeta:
    d = dataset.meta
    return DecoderMeta(
        encoder=d.encoder,
        embed_dim=d.embed_dim,
        random_init=d.random_init,
        codec=d.codec,
        codec_hash=d.codec_hash,
        code_bytes=d.code_bytes,
        image_size=d.image_size,
        crop_scale=d.crop_scale,
        detector=d.detector,
        spec=spec.to_dict(),
        dataset_key=d.key,
        codec_spec=d.codec_spec or d.codec,
        detector_path=d.detector_path,
        data=d.to_dict(),
        val_fraction=settings.val_fraction,
        split_seed=settings.seed,
        loss=weights.to_dict(),
        software_version=software_version(),
    )


class _Budget:
    """The run's progress in [0, 1]: by epochs, or by the time budget when that is nearer."""

    def __init__(self, epochs: int, max_minutes: float | None) -> None:
        self.epochs = epochs
        self.budget_s = max_minutes * 60.0 if max_minutes else None
        self.start = time.monotonic()

    def spent(self) -> bool:
        return self.budget_s is not None and time.monotonic() - self.start >= self.budget_s

    def progress(self, epoch_position: float) -> float:
        by_epochs = epoch_position / self.epochs
        if self.budget_s is None:
            return by_epochs
        return max(by_epochs, (time.monotonic() - self.start) / self.budget_s)


def train(
    dataset: CropDataset,
    out_dir: Path,
    settings: TrainSettings,
    *,
    resume: bool = False,
    on_epoch: Callable[[EpochResult], None] | None = None,
) -> TrainResult:
    """Train (or continue) a decoder on ``dataset``; checkpoints go to ``out_dir``."""
    import torch
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    device = resolve_device(settings.device)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    d = dataset.meta
    start = _start(dataset, out_dir, settings.width, resume)
    model = CropDecoder(start.spec).to(device)
    if start.model_state is not None:
        model.load_state_dict(start.model_state)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    if start.optimizer_state is not None:
        optimizer.load_state_dict(start.optimizer_state)

    weights = settings.weights or default_weights(device)
    encoder = None
    if weights.consistency > 0 and weights.consistency_every > 0:
        encoder = FrozenEncoder(
            d.encoder,
            settings.encoder_weights,
            d.random_init,
            settings.encoder_model_kwargs,
            settings.encoder_preprocess,
        ).to(device)
        if encoder.dim != d.embed_dim:
            raise DecoderMismatch("embedding dim", d.embed_dim, encoder.dim, d.encoder)
    loss_fn = ReconstructionLoss(weights, encoder)

    train_idx, val_idx = dataset.split(settings.val_fraction, settings.seed)
    if len(train_idx) == 0:
        raise ValueError(f"{len(dataset)} crops leave nothing to train on")
    eval_idx = val_idx if len(val_idx) else train_idx
    batches = max(1, math.ceil(len(train_idx) / settings.batch_size))
    meta = _meta(dataset, start.spec, settings, weights)
    best = start.best
    logger.info(
        "training a %d-parameter decoder on %s: %d train / %d held-out crops, %d batches/epoch%s",
        parameter_count(model), device, len(train_idx), len(val_idx), batches,
        " (RANDOM-INIT encoder embeddings)" if d.random_init else "",
    )  # fmt: skip
    budget = _Budget(max(settings.epochs, start.epoch + 1), settings.max_minutes)
    step, trained_s = start.step, start.trained_s
    history: list[EpochResult] = []
    stopped = "epochs"
    for epoch in range(start.epoch, budget.epochs):
        model.train()
        order = rng.permutation(train_idx)
        epoch_start = time.monotonic()
        losses: list[float] = []
        sums: dict[str, list[float]] = {}
        bar = tqdm(
            range(batches), desc=f"epoch {epoch + 1}/{budget.epochs}", unit="batch",
            disable=not settings.progress, file=sys.stderr, leave=False,
        )  # fmt: skip
        for b in bar:
            if budget.spent():
                stopped = "time budget"
                break
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * _lr_factor(step, budget.progress(epoch + b / batches))
            idx = np.sort(order[b * settings.batch_size : (b + 1) * settings.batch_size])
            target = to_tensor(dataset.crops[idx]).to(device)
            vectors = torch.from_numpy(dataset.embeddings[idx]).to(device)
            loss, parts = loss_fn(model(vectors), target, vectors, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            for k, v in parts.items():
                sums.setdefault(k, []).append(v)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        bar.close()
        if not losses:
            break
        psnr, ssim = validate(model, dataset, eval_idx, device)
        seconds = time.monotonic() - epoch_start
        trained_s += seconds
        result = EpochResult(
            epoch=epoch + 1, step=step, train_loss=float(np.mean(losses)), psnr=psnr, ssim=ssim,
            seconds=seconds, parts={k: float(np.mean(v)) for k, v in sums.items()},
        )  # fmt: skip
        history.append(result)
        meta = replace(
            meta,
            epoch=epoch + 1 if stopped == "epochs" else epoch,  # a cut epoch is redone
            step=step,
            trained_s=round(trained_s, 1),
            metrics={"psnr": round(psnr, 4), "ssim": round(ssim, 5)},
        )
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_checkpoint(out_dir / "last.pt", meta, state, optimizer.state_dict())
        if best is None or ssim > best.metrics.get("ssim", -math.inf):
            best = meta
            save_checkpoint(out_dir / "best.pt", meta, state)
        _write_summary(out_dir, best, stopped, train_idx, val_idx, start.history, history)
        if on_epoch is not None:
            on_epoch(result)
        if stopped != "epochs":
            break
    if not history or best is None:
        raise RuntimeError("no training step ran (time budget already spent?)")
    return TrainResult(
        best=out_dir / "best.pt",
        last=out_dir / "last.pt",
        meta=best,
        history=history,
        stopped=stopped,
        train_crops=len(train_idx),
        val_crops=len(val_idx),
        seconds=time.monotonic() - budget.start,
        parameters=parameter_count(model),
    )


def _write_summary(
    out_dir: Path,
    best: DecoderMeta,
    stopped: str,
    train_idx: NDArray[np.int64],
    val_idx: NDArray[np.int64],
    earlier: list[dict[str, Any]],
    history: list[EpochResult],
) -> None:
    """``train.json`` after every epoch: a killed run still says how far it got."""
    summary = {
        "best": best.to_dict(),
        "stopped": stopped,
        "train_crops": len(train_idx),
        "val_crops": len(val_idx),
        "history": earlier + [asdict(h) for h in history],
    }
    tmp = out_dir / ".train.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out_dir / "train.json")
