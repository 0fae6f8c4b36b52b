"""An untrained crop decoder for ``semcom bench dashboard``: the crop route's time, not its pixels.

The seeded catalog's embeddings are synthetic, so no trained decoder exists for their space;
:func:`write_bench_decoder` writes a checkpoint the cloud loads like any other, made with the
project's own decoder code (:class:`cloud.decoder.model.CropDecoder`) at the size
``semcom cloud train-decoder`` uses by default (64 px, width 16), with weights drawn from
``torch.manual_seed(seed)`` and never trained. Its metadata names the seeded space exactly
(encoder, dim, random-init flag, the f16 codec and its content hash), so the cloud's decode
service accepts every seeded embedding.

Fresh weights (BatchNorm at its initial statistics) turn every embedding into the same flat
grey (a 178-byte PNG), which would time PNG encoding and transfer of nothing; the convolution
weights are scaled by ``CONV_GAIN`` (as ``tests/cloud/test_decoder_api.py`` does) so the crops
vary and their PNGs are about the size of a real 64 px crop's (~6 KB). Decoding costs the same
either way. The crops are noise: the bench serves them only to time the crop route.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

CONV_GAIN: Final = 3.0
DETECTOR: Final = "bench-synthetic"


@dataclass(frozen=True)
class BenchDecoder:
    path: Path
    space: str
    seed: int
    image_size: int
    width: int
    parameters: int

    def describe(self) -> str:
        return (
            f"untrained (random weights, seed {self.seed}) decoder for {self.space}: the crops "
            "are noise; served only to time the crop route"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "width": self.width,
            "parameters": self.parameters,
            "seed": self.seed,
            "trained": False,
            "conv_gain": CONV_GAIN,
        }


def write_bench_decoder(
    path: Path, encoder: str, dim: int, codec_id: str, seed: int = 0
) -> BenchDecoder:
    """Write the untrained decoder for the seeded space (``encoder``, ``dim``, not random-init
    encoder, ``codec_id``) to ``path``."""
    import torch

    from cloud.decoder.checkpoint import DecoderMeta, save_checkpoint
    from cloud.decoder.model import CropDecoder, DecoderSpec, parameter_count
    from edge.config import CropConfig
    from shared.vectors import create_codec
    from shared.version import software_version

    spec = DecoderSpec(dim)  # the defaults of `semcom cloud train-decoder`: 64 px, width 16
    torch.manual_seed(seed)
    model = CropDecoder(spec)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(CONV_GAIN)
    codec = create_codec(codec_id, dim)
    meta = DecoderMeta(
        encoder=encoder,
        embed_dim=dim,
        random_init=False,
        codec=codec.codec_id,
        codec_hash=codec.content_hash.hex(),
        code_bytes=codec.code_bytes,
        image_size=spec.image_size,
        crop_scale=CropConfig().scale,
        detector=DETECTOR,
        spec=spec.to_dict(),
        codec_spec=codec.codec_id,
        split_seed=seed,
        software_version=software_version(),
    )
    save_checkpoint(path, meta, model.state_dict())
    return BenchDecoder(path, meta.space, seed, spec.image_size, spec.width, parameter_count(model))
