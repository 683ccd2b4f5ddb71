"""A font that can draw Chinese, where the machine has one.

Pillow draws with whatever TrueType font it is given; labels in zh_Hans/zh_Hant need one with
CJK glyphs. Deployments install one (Debian: ``fonts-noto-cjk``, or ``fonts-wqy-microhei``) or
name it in ``GREENPOINTS_CJK_FONT``; without any, labels fall back to DejaVu (Latin only: CJK
text shows as boxes) and then to Pillow's built-in font, so a picture is always drawn.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from PIL import ImageFont

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont

CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


@functools.cache
def font_path() -> str | None:
    """The first font found: ``GREENPOINTS_CJK_FONT``, then the usual CJK fonts, then DejaVu."""
    named = os.environ.get("GREENPOINTS_CJK_FONT")
    for candidate in ((named,) if named else ()) + CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return None


def has_cjk() -> bool:
    """Whether pictures can carry Chinese labels (a CJK font was found); callers draw English
    labels otherwise, since boxes in place of characters say nothing."""
    chosen = font_path()
    return chosen is not None and "DejaVu" not in chosen


def load(size: int, path: str | None = None) -> FontType:
    """``path`` (or ``font_path()``) at ``size`` pixels; Pillow's own font if none loads."""
    chosen = path or font_path()
    if chosen:
        try:
            return ImageFont.truetype(chosen, size)
        except OSError:
            pass
    return ImageFont.load_default(size)
