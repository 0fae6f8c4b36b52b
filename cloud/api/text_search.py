"""``POST /v1/search {"text": ...}``: descriptions by their words, and crops by their meaning.

One text query answers from two places, each labelled:

- ``hits``: the describer's descriptions holding every word (full text, scored, best first),
  where they always were, so clients written before crops were searchable read them unchanged;
- ``crops``: detections whose crops lie nearest the text in a CLIP space, when the cloud has a
  text encoder (the text tower of the edges' open_clip model, :mod:`cloud.text_encoder`). It is
  a :class:`~cloud.api.search_schemas.SearchResponse`, as an image search returns it (space,
  ``random_init_encoder``, hits one per track). Without a text encoder, or while no edge has
  sent crops of its space, ``crops`` is null and ``crops_unavailable`` says why, with a code:
  the descriptions still answer.

A text encoder whose vectors are not as wide as the stored space's is a configuration error
(409 ``text_encoder_mismatch``), never a silent empty answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import TextEncoder
from cloud.api.descriptions import DescriptionService, TextHit
from cloud.api.errors import Conflict
from cloud.api.search_schemas import SearchResponse
from cloud.api.service import QueryService
from cloud.catalog import Catalog
from cloud.index.base import SearchFilter

NO_TEXT_ENCODER = (
    "no text encoder: searching crops by text needs an open_clip model as the cloud's query "
    "encoder (cloud config `encoder: {type: open_clip, ...}`), the same model the edges embed "
    "crops with"
)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class CropsUnavailable(_Out):
    code: Literal["no_text_encoder", "unknown_space"] = Field(
        description="no_text_encoder: the cloud has no text tower configured; unknown_space: "
        "no crops of the text encoder's space are stored (yet)."
    )
    message: str = Field(description="What is missing and what to do.")


class TextSearchResponse(_Out):
    """Descriptions (``hits``, full text) and crops (``crops``, by meaning), each labelled."""

    text: str = Field(description="The query as given.")
    hits: list[TextHit] = Field(
        description="Descriptions holding every word, best first (full-text search)."
    )
    crops: SearchResponse | None = Field(
        description="Detections whose crops are nearest the text in the text encoder's CLIP "
        "space (cosine scores, one hit per track); null: see `crops_unavailable`."
    )
    crops_unavailable: CropsUnavailable | None = Field(
        description="Why `crops` is null (no text encoder, or no crops in its space); null "
        "when `crops` holds the answer."
    )


class TextSearchService:
    """What a text query does, without HTTP (blocking: run in worker threads)."""

    def __init__(
        self,
        descriptions: DescriptionService,
        detections: QueryService,
        catalog: Catalog,
        encoder: TextEncoder | None,
    ) -> None:
        self.descriptions = descriptions
        self.detections = detections
        self.catalog = catalog
        self.encoder = encoder

    def search(self, text: str, k: int, where: SearchFilter | None) -> TextSearchResponse:
        hits = self.descriptions.search(text, k, where)
        crops, unavailable = self._crops(text, k, where)
        return TextSearchResponse(text=text, hits=hits, crops=crops, crops_unavailable=unavailable)

    def _crops(
        self, text: str, k: int, where: SearchFilter | None
    ) -> tuple[SearchResponse | None, CropsUnavailable | None]:
        encoder = self.encoder
        if encoder is None:
            return None, CropsUnavailable(code="no_text_encoder", message=NO_TEXT_ENCODER)
        space = encoder.space
        if space not in self.detections.deps.searcher.spaces():
            return None, CropsUnavailable(
                code="unknown_space",
                message=f"no crops are stored in the text encoder's space {space!r}: no edge "
                "has sent crops embedded by that model (same model and weights) yet",
            )
        vectors = encoder.embed_texts([text])
        stored = self.catalog.space(space)
        if vectors.shape[1] != encoder.dim or (stored is not None and stored.dim != encoder.dim):
            held = stored.dim if stored is not None else encoder.dim
            raise Conflict(
                f"the text encoder gives {vectors.shape[1]}-d vectors, but space {space!r} "
                f"holds {held}-d ones: the cloud's `encoder` must be the edges' open_clip model",
                code="text_encoder_mismatch",
            )
        return self.detections.search_vectors(space, vectors, k, where), None
