# The simulated edge of deploy/compose.yaml (profile sim): `semcom edge replay --synthetic`,
# synthetic tracks over the real uplink. Only what that command imports - the semcom package
# and the edge's uplink libraries - no detector, encoder or PyTorch. The pins are those of
# pyproject.toml's edge extra (tests/deploy checks that they agree); OpenCV is its headless
# wheel (the edge's crop module imports cv2; no libGL in a slim image).
# Build context: the repository root (compose.yaml: context ..).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY edge ./edge
COPY cloud ./cloud
COPY sim ./sim
COPY semcom ./semcom
RUN pip install . \
        "pydantic>=2.6,<3" \
        "aiortc>=1.9,<2" \
        "httpx>=0.27,<1" \
        "websockets>=13,<18" \
        "tenacity>=8.2,<10" \
        "opencv-python-headless>=4.8,<5" \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/semcom semcom \
    && install -d -o 10001 -g 10001 /var/lib/semcom \
    && rm -rf /src

USER 10001:10001
WORKDIR /var/lib/semcom
ENTRYPOINT ["semcom"]
CMD ["edge", "replay", "--help"]
