"""RoI embedding with a timm Vision Transformer, in PyTorch or ONNX Runtime.

Preprocessing (input size, mean, std, interpolation) comes from the model's timm data config and
travels with exported ONNX files as metadata, so no value is hard-coded here. The RoI crop
already is the region to embed, so timm's centre-crop step is not applied. Embeddings are
L2-normalised (cosine geometry) before they leave the encoder.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge import onnx_cache, ort_providers
from edge.config import OnnxEncoderConfig, TimmEncoderConfig
from edge.encoder_config import OpenClipEncoderConfig
from edge.errors import BackendUnavailable, EdgeError, ModelNotFound
from edge.onnx_cache import ONNX_META_KEY as ONNX_META_KEY
from edge.onnx_cache import quantize_onnx as quantize_onnx
from shared import timm_encoder
from shared.errors import EncoderModelError, EncoderWeightsNotFound
from shared.models.errors import ModelError
from shared.timm_encoder import Preprocess as Preprocess  # re-exported: the edge's contract

logger = logging.getLogger(__name__)

#: ``auto`` quantises when at least this share of the weights feeds MatMul/Gemm
AUTO_INT8_SHARE = 0.5


class Encoder(Protocol):
    name: str
    dim: int
    random_init: bool
    runtime: str  # torch, onnx or onnx-int8
    execution: str  # where it runs: "torch cpu", "onnxruntime TensorRT (fp16)", ...
    preprocess: Preprocess

    def embed(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(n, size, size, 3) RGB uint8 crops -> (n, dim) unit-norm float32 embeddings."""
        ...


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), np.float32)


def _missing_weights(name: str, exc: EncoderWeightsNotFound) -> ModelNotFound:
    if exc.path != timm_encoder.HUB_CACHE:
        return ModelNotFound(
            f"encoder weights for {name}",
            exc.path,
            "Copy the weights file there or fix --encoder-weights.",
        )
    return ModelNotFound(
        f"encoder weights for {name}",
        exc.path,
        f"Pass --encoder-weights PATH (.safetensors/.pth), or on a connected machine run "
        f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` and copy "
        f"~/.cache/huggingface to this machine. Only for development, --random-init-encoder "
        f"runs untrained weights. ({exc.reason})",
    )


class TorchEncoder(Protocol):
    """What :func:`torch_embed` needs of a PyTorch encoder (timm or an open_clip tower)."""

    dim: int
    batch_size: int
    preprocess: Preprocess
    _torch: Any
    _device: Any


def torch_embed(encoder: TorchEncoder, model: Any, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Crops through a PyTorch image model in batches: (n, dim) unit-norm float32 embeddings."""
    if len(crops) == 0:
        return np.zeros((0, encoder.dim), np.float32)
    torch = encoder._torch
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), encoder.batch_size):
            x = torch.from_numpy(encoder.preprocess.apply(crops[i : i + encoder.batch_size]))
            out.append(model(x.to(encoder._device)).float().cpu().numpy())
    return _unit(np.concatenate(out))


def resolve_model_name(config: TimmEncoderConfig) -> TimmEncoderConfig:
    """A config naming a models-manifest entry (``--encoder mobilenetv2``) as the timm model it
    stands for: the entry's timm id, its provisioned weights file, its ``model_kwargs`` and
    preprocessing, each overridden by what the config sets itself. Other configs unchanged.

    The encoder is then announced under the timm id, so a manifest name and the same model given
    by flags (``--encoder ID --encoder-weights FILE --model-kwargs ...``) share one space.
    """
    try:
        resolved = timm_encoder.with_manifest(config)
    except (ModelError, EncoderModelError) as exc:
        raise EdgeError(f"encoder {config.name!r}: {exc}") from exc
    if resolved is not config:
        logger.info(
            "encoder %s: the timm model %s, weights %s",
            config.name,
            resolved.name,
            resolved.weights,
        )
    return resolved


class TimmEncoder:
    """A timm model in PyTorch; weights from a path, the local cache, or random (flagged)."""

    def __init__(self, config: TimmEncoderConfig) -> None:
        import torch

        config = resolve_model_name(config)

        self.name = config.name
        self.model_kwargs = dict(config.model_kwargs)
        self.random_init = config.random_init
        self.batch_size = config.batch_size
        self.runtime = "torch"
        self.execution = f"torch {config.device}"
        torch.set_num_threads(config.threads)  # process-wide in torch: documented in the config
        try:
            model = timm_encoder.build_model(
                config.name,
                weights=config.weights,
                random_init=config.random_init,
                model_kwargs=config.model_kwargs,
            )
        except EncoderWeightsNotFound as exc:
            raise _missing_weights(config.name, exc) from exc
        except EncoderModelError as exc:
            raise EdgeError(str(exc)) from exc
        self._device = torch.device(config.device)
        self._model = model.eval().to(self._device)
        self._torch = torch
        self.dim = int(model.num_features)
        self.preprocess = timm_encoder.resolve_preprocess(
            model, **config.preprocess.model_dump(exclude_none=True)
        )
        if self.random_init:
            logger.warning("encoder %s has RANDOM weights: embeddings carry no meaning", self.name)

    def embed(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        return torch_embed(self, self._model, crops)

    def export_onnx(self, path: Path, opset: int = onnx_cache.OPSET) -> None:
        """Write the model as ONNX (dynamic batch) with its preprocessing as metadata."""
        import onnx

        size = self.preprocess.size
        dummy = self._torch.zeros(1, 3, size, size, device=self._device)
        with warnings.catch_warnings():
            # Tracing a ViT warns about shape checks turned into constants; the batch axis stays
            # dynamic and the input size is fixed by design, so these are expected.
            warnings.simplefilter("ignore", self._torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            self._torch.onnx.export(
                self._model,
                (dummy,),
                str(path),
                input_names=["pixels"],
                output_names=["embedding"],
                dynamic_axes={"pixels": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        model = onnx.load(str(path))
        meta = model.metadata_props.add()
        meta.key = ONNX_META_KEY
        meta.value = json.dumps(
            {
                "name": self.name,
                "model_kwargs": self.model_kwargs,
                "dim": self.dim,
                "random_init": self.random_init,
                "size": size,
                "mean": self.preprocess.mean,
                "std": self.preprocess.std,
                "interpolation": self.preprocess.interpolation,
            }
        )
        onnx.save(model, str(path))


class OnnxEncoder:
    """An encoder exported by :meth:`TimmEncoder.export_onnx`, run by ONNX Runtime."""

    def __init__(self, config: OnnxEncoderConfig) -> None:
        if not config.path.is_file():
            raise ModelNotFound(
                "ONNX encoder",
                str(config.path),
                "Create it with `semcom edge export-encoder --out PATH`.",
            )
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime cannot be imported: {exc}") from exc
        self._session, self.providers = ort_providers.open_session(
            config.path,
            config.providers,
            fp16=config.fp16,
            trt_cache_dir=config.trt_cache_dir,
            threads=config.threads,
        )
        #: where it runs, e.g. "onnxruntime TensorRT (fp16)" or "onnxruntime CPU"
        self.execution = f"onnxruntime {ort_providers.describe(self.providers, config.fp16)}"
        meta_raw = self._session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY)
        if meta_raw is None:
            raise EdgeError(
                f"{config.path} lacks semcom encoder metadata; export it with "
                "`semcom edge export-encoder`"
            )
        meta = json.loads(meta_raw)
        self.name = str(meta["name"])
        self.dim = int(meta["dim"])
        self.random_init = bool(meta["random_init"])
        self.runtime = "onnx-int8" if meta.get("quantized") else "onnx"
        self.batch_size = config.batch_size
        self.preprocess = Preprocess(
            int(meta["size"]), tuple(meta["mean"]), tuple(meta["std"]), str(meta["interpolation"])
        )
        self._input = self._session.get_inputs()[0].name
        logger.info(
            "encoder %s (%s): ONNX Runtime providers [%s]",
            self.name,
            config.path,
            ", ".join(self.providers),
        )

    def embed(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = [
            self._session.run(
                None, {self._input: self.preprocess.apply(crops[i : i + self.batch_size])}
            )[0]
            for i in range(0, len(crops), self.batch_size)
        ]
        return _unit(np.concatenate(out).astype(np.float32))


def build_encoder(
    config: TimmEncoderConfig | OnnxEncoderConfig | OpenClipEncoderConfig,
) -> Encoder:
    if isinstance(config, OnnxEncoderConfig):
        return OnnxEncoder(config)
    if isinstance(config, OpenClipEncoderConfig):
        from edge.clip_encoder import OpenClipEncoder

        return OpenClipEncoder(config)
    config = resolve_model_name(config)
    runtime = resolve_runtime(config)
    if runtime == "torch":
        return TimmEncoder(config)
    folder = onnx_cache.cache_dir(config.onnx_cache_dir)
    path = onnx_cache.entry_path(folder, config, runtime, onnx_cache.cache_key(config, runtime))
    cached = _open_cached(path, config)
    if cached is not None:
        return cached
    encoder = TimmEncoder(config)
    try:
        started = time.monotonic()
        try:
            onnx_cache.write_atomically(path, lambda tmp: _export(encoder, tmp, runtime))
        except OSError as exc:  # a read-only or full cache folder: export without keeping it
            logger.warning("cannot write the ONNX cache %s (%s): not kept", folder, exc)
            with tempfile.TemporaryDirectory(prefix="semcom-encoder-") as tmp:
                path = Path(tmp) / "encoder.onnx"
                _export(encoder, path, runtime)
                return _open(path, config)
        opened = _open(path, config)
        logger.info(
            "encoder %s: exported to ONNX (%s) in %.1f s: %s",
            config.name,
            opened.runtime,
            time.monotonic() - started,
            path,
        )
        return opened
    except Exception as exc:  # exporters raise many types; the cause is kept in the message
        if config.runtime != "auto":
            raise BackendUnavailable(
                f"cannot run {config.name} in ONNX Runtime ({type(exc).__name__}: {exc}); "
                "use --encoder-runtime torch"
            ) from exc
        logger.warning("ONNX export of %s failed (%s); running it in PyTorch", config.name, exc)
        return encoder


def resolve_runtime(config: TimmEncoderConfig) -> str:
    """torch on a GPU for ``auto``; fp32 ONNX for ``auto`` with GPU providers (TensorRT and
    CUDA do not run the int8 MatMul kernels; TensorRT makes its own fp16); on a CPU ``auto``
    stays: ONNX Runtime, int8 when it pays (decided on the exported graph, :func:`_export`)."""
    if config.runtime == "auto" and config.device != "cpu":
        return "torch"
    if config.runtime == "auto" and ort_providers.wants_gpu(config.providers):
        return "onnx"
    return config.runtime


def _export(encoder: TimmEncoder, path: Path, runtime: str) -> None:
    """Export; quantise for ``onnx-int8``, and for ``auto`` when most weights are in MatMul/Gemm
    (transformers: about 1.3x faster at cosine 0.999 to fp32). Only MatMul/Gemm are quantised:
    int8 convolutions (ConvInteger) made MobileNetV2 8x slower than fp32 and moved its vectors
    to cosine 0.41 from the fp32 ones the cloud computes (docs/architecture.md, "Encoder")."""
    encoder.export_onnx(path)
    if runtime == "onnx-int8" or (
        runtime == "auto" and onnx_cache.quantizable_share(path) >= AUTO_INT8_SHARE
    ):
        quantize_onnx(path, path)


def _open(path: Path, config: TimmEncoderConfig) -> OnnxEncoder:
    return OnnxEncoder(
        OnnxEncoderConfig(
            path=path,
            threads=config.threads,
            batch_size=config.batch_size,
            providers=config.providers,
            fp16=config.fp16,
            trt_cache_dir=config.trt_cache_dir,
        )
    )


def _open_cached(path: Path, config: TimmEncoderConfig) -> OnnxEncoder | None:
    """The cached export at ``path``, or None (absent; unreadable: removed, to be rebuilt)."""
    if not path.is_file():
        return None
    try:
        encoder = _open(path, config)
    except Exception as exc:  # ONNX Runtime raises its own types for a corrupt file
        logger.warning("ONNX cache entry %s is unusable (%s): rebuilding it", path, exc)
        path.unlink(missing_ok=True)
        return None
    logger.info("encoder %s: ONNX (%s) from cache %s", config.name, encoder.runtime, path)
    if encoder.random_init:
        logger.warning("encoder %s has RANDOM weights: embeddings carry no meaning", config.name)
    return encoder
