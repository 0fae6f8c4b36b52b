"""``GET /v1/detections/{id}/image``: a detection's crop, rebuilt from its embedding.

The cloud stores no pixels; the image is the decoder's reconstruction of the stored code
(:mod:`cloud.decoder.service`: batched, off the event loop, LRU-cached). Errors keep the API's
JSON shape: 404 for an unknown detection or one without an embedding, 503
``decoder_unavailable`` when no decoder is configured or the configured one reads another
embedding space than the detection's (another encoder, dim or random-init flag).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials

from cloud.api.auth import BEARER, client_of
from cloud.api.errors import Conflict, NotFound, Unavailable
from cloud.api.params import DetectionId
from cloud.api.schemas import ErrorResponse
from cloud.decoder.errors import (
    CodecUnavailable,
    DecoderError,
    NoEmbedding,
    SpaceMismatch,
    UnknownDetection,
)
from cloud.decoder.service import DecodeService

NO_DECODER = "no crop decoder configured (cloud config `decoder`)"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "The rebuilt crop (PNG)."},
    401: {"model": ErrorResponse, "description": "No or malformed bearer token."},
    403: {"model": ErrorResponse, "description": "Unknown token."},
    404: {"model": ErrorResponse, "description": "No such detection, or it has no embedding."},
    409: {"model": ErrorResponse, "description": "The stored code's codec is not loaded."},
    503: {
        "model": ErrorResponse,
        "description": "No decoder configured, or it decodes another embedding space.",
    },
}


def build_decoded_router(
    decoder: DecodeService | None,
    token_digests: Mapping[str, bytes] | None = None,
    route_class: type[APIRoute] = APIRoute,
) -> APIRouter:
    """The image route; ``decoder`` None answers 503 (the app must also install the JSON
    error handlers, ``cloud.api.errors.install_error_handlers``).

    Inside the API (``ApiDeps.extra_routes``) the API's token check and timed ``route_class``
    apply; standalone, ``token_digests`` gives the route its own token check.
    """
    dependencies = []
    if token_digests is not None:
        digests = dict(token_digests)

        def require_token(
            request: Request,
            _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
        ) -> str:
            return client_of(digests, request.headers.get("authorization"))

        dependencies.append(Depends(require_token))
    router = APIRouter(route_class=route_class, dependencies=dependencies)

    @router.get(
        "/v1/detections/{detection_id}/image",
        response_class=Response,
        responses=_RESPONSES,
        tags=["catalog"],
    )
    async def detection_image(detection_id: Annotated[DetectionId, Path()]) -> Response:
        """The detection's crop rebuilt from its embedding (the cloud keeps no pixels).

        The header ``X-Semcom-Decoder`` names the embedding space; a space ending in
        ``-random-init`` comes from an untrained encoder and the image means little.
        """
        if decoder is None:
            raise Unavailable(NO_DECODER, code="decoder_unavailable")
        try:
            png = await decoder.png(detection_id)
        except UnknownDetection as exc:
            raise NotFound(str(exc)) from None
        except NoEmbedding as exc:
            raise NotFound(str(exc), code="no_embedding") from None
        except SpaceMismatch as exc:
            raise Unavailable(str(exc), code="decoder_unavailable") from None
        except CodecUnavailable as exc:
            raise Conflict(str(exc), code="codec_unavailable") from None
        except DecoderError as exc:
            raise Unavailable(f"the decoder failed: {exc}", code="decoder_unavailable") from None
        return Response(
            png,
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=300", "X-Semcom-Decoder": decoder.space},
        )

    return router
