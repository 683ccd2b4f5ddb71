"""Coordinates at the WeChat edge (WECHAT.md rule 11).

The ledger and Telegram use WGS-84 (GPS). WeChat's location messages and picker come from
Tencent Maps in GCJ-02, which in mainland China lies some hundreds of metres off WGS-84; a
nearby search on the raw numbers would rank shops wrongly. So positions are converted to WGS-84
as they arrive, and map links say ``coordinate=wgs84`` so the map app converts back.
The transform is the published GCJ-02 obfuscation (Krasovsky ellipsoid); its inverse here is
iterative, within a few centimetres.
"""

from __future__ import annotations

import math
from urllib.parse import quote

_A = 6378245.0
_EE = 0.00669342162296594323


def _outside_china(lat: float, lon: float) -> bool:
    return not (73.66 < lon < 135.05 and 3.86 < lat < 53.55)


def _delta(lat: float, lon: float) -> tuple[float, float]:
    x, y = lon - 105.0, lat - 35.0
    dlat = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * math.sqrt(abs(x))
        + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
        + (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
        + (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    )
    dlon = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * math.sqrt(abs(x))
        + (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
        + (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
        + (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    )
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """Degrees in, degrees out; unchanged outside mainland China's bounding box."""
    if _outside_china(lat, lon):
        return lat, lon
    dlat, dlon = _delta(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """The inverse, by fixed-point iteration (the forward shift varies slowly)."""
    if _outside_china(lat, lon):
        return lat, lon
    wlat, wlon = lat, lon
    for _ in range(8):
        glat, glon = wgs84_to_gcj02(wlat, wlon)
        wlat, wlon = wlat - (glat - lat), wlon - (glon - lon)
    return wlat, wlon


def map_link(name: str, lat: float, lon: float) -> str:
    """An Amap marker link for a WGS-84 position (a 公众号 cannot send a venue: rule 11)."""
    return (
        f"https://uri.amap.com/marker?position={lon:.6f},{lat:.6f}"
        f"&name={quote(name, safe='')}&coordinate=wgs84&callnative=1"
    )
