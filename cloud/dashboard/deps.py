"""What the dashboard needs from the rest of the cloud: services, sessions, the link monitor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cloud.api.analytics import AnalyticsService
from cloud.api.descriptions import DescriptionService
from cloud.api.service import QueryService
from cloud.api.text_search import TextSearchService
from cloud.catalog import Catalog
from cloud.dashboard.sessions import UiSessions
from cloud.linkmon import LinkMonitor


class CropSource(Protocol):
    """Rebuilt crops (``cloud.decoder.service.DecodeService``)."""

    @property
    def space(self) -> str: ...

    async def png(self, detection_id: int) -> bytes: ...


@dataclass(frozen=True)
class DashboardDeps:
    catalog: Catalog
    query: QueryService
    descriptions: DescriptionService
    text_search: TextSearchService
    token_digests: Mapping[str, bytes]
    """API clients that may sign in: name -> SHA-256 of the token."""
    sessions: UiSessions
    decoder: CropSource | None
    """None: pages show a placeholder where a rebuilt crop would be."""
    link: LinkMonitor | None
    connected: Callable[[], Sequence[str]]
    """Edges with a live session on this replica now."""
    image_search: bool
    """A query encoder is configured (search by uploaded image)."""
    text_crops: bool
    """A text encoder is configured (text search also finds crops)."""
    secure_cookies: bool = False
    """Mark cookies Secure (behind TLS); off by default for plain-HTTP loopback use."""
    live_poll_s: float = 0.25
    """How often the live feed looks for new tracks."""
    analytics: AnalyticsService | None = None
    """Traffic analytics (the Events page); None: the page says the cloud runs none."""
