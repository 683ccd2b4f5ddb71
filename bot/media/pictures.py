"""``bot.chat.pictures.Pictures`` drawn and read with this package (Pillow, qrcode, zxing-cpp)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.chat.pictures import ChartLabels, DayFigures, MapLabels, MapMerchant
from bot.media import fonts, qr, redemption_picture, scan
from bot.media.circle_map import draw_circle_map
from bot.media.pool_chart import draw_pool_chart


class MediaPictures:
    """The pictures every channel's features get (``Services.pictures``)."""

    def has_cjk(self) -> bool:
        return fonts.has_cjk()

    def qr(self, data: str) -> bytes:
        return qr.png(data)

    def redemption_code(self, link: str, digits: str) -> bytes:
        return redemption_picture.png(link, digits)

    async def read_qr(self, image: bytes) -> list[str]:
        return await scan.read_qr(image)

    async def pool_chart(self, days: Sequence[DayFigures], labels: ChartLabels) -> bytes:
        return await asyncio.to_thread(draw_pool_chart, days, labels)

    async def circle_map(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        merchants: Sequence[MapMerchant],
        labels: MapLabels,
    ) -> bytes:
        return await asyncio.to_thread(draw_circle_map, lat, lon, radius_m, merchants, labels)
