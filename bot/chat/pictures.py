"""Pictures a feature asks for, in neutral terms: a QR code for a link, codes read from a photo,
the pool chart and the circle map.

The drawing and reading live in ``bot.media`` (Pillow, qrcode, zxing-cpp); a feature reaches
them through ``turn.services.pictures`` (``Pictures``), so it imports no imaging library and
names only what it wants drawn (DESIGN.md "Layout": handlers import ``bot.chat`` and
``ledger_client`` only). The figures and labels below are what the feature hands over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class DayFigures:
    """One published day: the pool (fen) and points in circulation at its heads."""

    date: dt.date
    pool_fen: int
    points: int

    @property
    def fen_per_point(self) -> float:
        """The reported ratio, for plotting only (1 fen per point until both are positive)."""
        return self.pool_fen / self.points if self.pool_fen > 0 and self.points > 0 else 1.0


@dataclass(frozen=True)
class ChartLabels:
    """Texts on the chart, translated by the caller (e.g. "积分池（元）")."""

    title: str
    pool: str  # the pool panel, in yuan
    price: str  # the price panel, in fen per point
    empty: str  # said instead of a chart when there is no day yet


@dataclass(frozen=True)
class MapMerchant:
    lat: float
    lon: float
    category: str


@dataclass(frozen=True)
class MapLabels:
    """Translated by the caller: the title, and a name per category (the key if missing)."""

    title: str
    categories: Mapping[str, str]
    scale: str = "{metres} m"  # the scale bar's text; ``{metres}`` is filled in


class Pictures(Protocol):
    """What features may ask to have drawn or read. Every picture is PNG bytes."""

    def has_cjk(self) -> bool:
        """Whether Chinese labels can be drawn (a CJK font is installed); without one a
        feature draws its labels in English rather than as boxes."""
        ...

    def qr(self, data: str) -> bytes:
        """``data`` (a link or a code) as a QR code; about a millisecond, so inline."""
        ...

    def redemption_code(self, link: str, digits: str) -> bytes:
        """A customer's redemption code for the till: the QR code of ``link`` with ``digits``
        (20) as a Code 128 barcode under it, for a scanner gun (issue 11)."""
        ...

    async def read_qr(self, image: bytes) -> list[str]:
        """The texts of the QR codes in a photo (none when it is no readable picture)."""
        ...

    async def pool_chart(self, days: Sequence[DayFigures], labels: ChartLabels) -> bytes:
        """The points pool (yuan) and point price (fen per point) by day; drawn off the event
        loop (tens of milliseconds of CPU)."""
        ...

    async def circle_map(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        merchants: Sequence[MapMerchant],
        labels: MapLabels,
    ) -> bytes:
        """A map of the walk circle (``radius_m`` metres) around (lat, lon) with the merchants
        in it; drawn off the event loop."""
        ...
