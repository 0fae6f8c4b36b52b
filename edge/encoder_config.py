"""The edge's encoder section: a timm model (run in PyTorch or exported to ONNX Runtime), or an
ONNX file exported before. Part of :class:`edge.config.EdgeConfig` (``encoder:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from edge.ort_providers import parse_providers, wants_gpu
from shared.timm_encoder import check_model_kwargs


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _split_commas(value: Any) -> Any:
    """``"0.5,0.5,0.5"`` (a flag or an environment variable) -> a list of three strings."""
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else value


def _positive(values: tuple[float, float, float]) -> tuple[float, float, float]:
    if min(values) <= 0:
        raise ValueError("every std value must be > 0")
    return values


#: three per-channel values (R, G, B), as a list or as ``"0.5,0.5,0.5"``
Triple = Annotated[tuple[float, float, float], BeforeValidator(_split_commas)]
#: ONNX Runtime execution providers by short name, in order of preference
Providers = Annotated[tuple[str, ...], BeforeValidator(parse_providers)]
PROVIDERS_DOC = (
    "ONNX Runtime execution providers, in order of preference: tensorrt, cuda, cpu, or auto "
    "(= [tensorrt, cuda, cpu]). Those this onnxruntime build lacks are skipped with one warning "
    "(the CPU-only onnxruntime wheel has neither TensorRT nor CUDA: onnxruntime-gpu for JetPack "
    "does)."
)
FP16_DOC = (
    "TensorRT provider only: build fp16 engines (about 2x faster on a Jetson); CUDA and the CPU "
    "run the ONNX file's fp32."
)
TRT_CACHE_DOC = (
    "Where the TensorRT provider keeps its engines between starts (the first start builds them: "
    "minutes on a Jetson); default $SEMCOM_CACHE_DIR/tensorrt, else ~/.cache/semcom/tensorrt."
)
#: ``timm.create_model`` keyword arguments: typed scalars
ModelKwargs = Annotated[
    dict[str, StrictBool | StrictInt | StrictFloat | str], AfterValidator(check_model_kwargs)
]


class PreprocessConfig(_Model):
    """Overrides of the model's timm data config; unset values come from it."""

    size: int | None = Field(None, ge=16, le=4096, description="Square input side (px).")
    mean: Triple | None = Field(None, description="Per-channel mean, 0-1 scale (R, G, B).")
    std: Annotated[Triple, AfterValidator(_positive)] | None = Field(
        None, description="Per-channel std, 0-1 scale (R, G, B)."
    )
    interpolation: Literal["nearest", "bilinear", "bicubic"] | None = Field(
        None, description="How a crop is resized to the input side."
    )


class TimmEncoderConfig(_Model):
    type: Literal["timm"] = "timm"
    runtime: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        "auto",
        description="Run the model in PyTorch, or export it (once: the export is cached) and run "
        "it in ONNX Runtime (onnx-int8: dynamic int8 weights of MatMul/Gemm, convolutions stay "
        "fp32). auto: on a CPU device ONNX Runtime, int8 when most weights are in MatMul/Gemm "
        "(transformers) and fp32 otherwise (CNNs), falling back to torch if the export fails; "
        "torch on a GPU.",
    )
    name: str = Field(
        "vit_base_patch16_224",
        description="timm model name (768-d ViT-B as in "
        "the paper; vit_small_patch16_224 (384-d) is the light edge choice).",
    )
    model_kwargs: ModelKwargs = Field(
        default_factory=dict,
        description="Keyword arguments of timm.create_model (typed scalars), e.g. "
        "{pad_type: same} for TensorFlow-ported weights; num_classes is always 0 (headless).",
    )
    weights: Path | None = Field(
        None,
        description="Local weights (.safetensors/.pth/.bin, a state dict; classifier keys are "
        "dropped); default: the Hugging Face cache, offline.",
    )
    random_init: bool = Field(
        False,
        description="Untrained weights: development and benchmarks "
        "only; everything produced says so.",
    )
    preprocess: PreprocessConfig = Field(
        default_factory=PreprocessConfig,
        description="Input size, mean, std, interpolation; unset values come from the model's "
        "timm data config.",
    )
    onnx_cache_dir: Path | None = Field(
        None,
        description="Where ONNX exports of this encoder are kept between starts (default: "
        "$SEMCOM_CACHE_DIR/onnx, else ~/.cache/semcom/onnx).",
    )
    threads: int = Field(1, ge=1, le=64, description="CPU threads for the encoder.")
    batch_size: int = Field(8, ge=1, le=256, description="Crops embedded per call.")
    device: str = Field("cpu", description="torch device: 'cpu', 'cuda', 'cuda:1', ...")
    providers: Providers = Field(("cpu",), description=PROVIDERS_DOC)
    fp16: bool = Field(False, description=FP16_DOC)
    trt_cache_dir: Path | None = Field(None, description=TRT_CACHE_DOC)

    @model_validator(mode="after")
    def _providers_need_onnx(self) -> TimmEncoderConfig:
        if wants_gpu(self.providers) and (self.runtime == "torch" or self.device != "cpu"):
            raise ValueError(
                f"providers [{', '.join(self.providers)}] are ONNX Runtime's: they need runtime "
                "onnx (or auto) and device cpu (device is the torch device, for runtime torch)"
            )
        return self


class OnnxEncoderConfig(_Model):
    type: Literal["onnx"] = "onnx"
    path: Path = Field(description="Encoder exported by `semcom edge export-encoder`.")
    threads: int = Field(1, ge=1, le=64, description="CPU threads for ONNX Runtime.")
    batch_size: int = Field(8, ge=1, le=256, description="Crops embedded per call.")
    providers: Providers = Field(("cpu",), description=PROVIDERS_DOC)
    fp16: bool = Field(False, description=FP16_DOC)
    trt_cache_dir: Path | None = Field(None, description=TRT_CACHE_DOC)


def _torch_only(value: str) -> str:
    if value in ("onnx", "onnx-int8"):
        raise ValueError(
            f"runtime {value!r}: an open_clip encoder runs in PyTorch only (its ONNX export is not "
            "supported); use runtime torch (or auto)"
        )
    if value not in ("auto", "torch"):
        raise ValueError(f"runtime {value!r}: use torch (or auto, which is torch)")
    return value


class OpenClipEncoderConfig(_Model):
    """The image tower of an open_clip (CLIP) model: crops land in CLIP's joint image-text
    space, where the cloud's text tower of the same model finds them by a sentence."""

    type: Literal["open_clip"] = "open_clip"
    runtime: Annotated[str, AfterValidator(_torch_only)] = Field(
        "auto",
        description="torch (auto is torch): open_clip encoders run in PyTorch; ONNX export is "
        "not supported for them.",
    )
    model: str = Field(
        "ViT-B-32",
        description="open_clip architecture (open_clip.list_models()), e.g. ViT-B-32 (512-d); "
        "the cloud's `encoder.model` must be the same.",
    )
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag, e.g. laion2b_s34b_b79k "
        "(open_clip.list_pretrained_tags_by_model(model)); read from the local Hugging Face "
        "cache only: pull it on a connected machine. It names the weights (and the space).",
    )
    weights: Path | None = Field(
        None,
        description="Local checkpoint file (open_clip_pytorch_model.bin / .safetensors) of "
        "the tag's weights, or, without a tag, weights named by the file's SHA-256.",
    )
    random_init: bool = Field(
        False,
        description="Untrained (seeded) weights: development and tests only; everything "
        "produced says so.",
    )
    threads: int = Field(1, ge=1, le=64, description="CPU threads for the encoder.")
    batch_size: int = Field(8, ge=1, le=256, description="Crops embedded per call.")
    device: str = Field("cpu", description="torch device: 'cpu', 'cuda', 'cuda:1', ...")

    @model_validator(mode="after")
    def _weights_named(self) -> OpenClipEncoderConfig:
        if not self.random_init and self.pretrained is None and self.weights is None:
            raise ValueError(
                f"open_clip model {self.model} needs weights: `pretrained` (a tag such as "
                "laion2b_s34b_b79k), `weights` (a checkpoint file), or `random_init` for "
                "development"
            )
        return self


EncoderConfig = Annotated[
    TimmEncoderConfig | OnnxEncoderConfig | OpenClipEncoderConfig, Field(discriminator="type")
]
