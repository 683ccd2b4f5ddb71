"""The text of a CSV file as spreadsheets in mainland China really save it (issue 11).

Chinese Excel's "CSV (comma delimited)" is GBK (code page 936); "CSV UTF-8" is UTF-8 with a BOM;
"Unicode text" is UTF-16 with a BOM (and tabs); WPS and Numbers write UTF-8 with or without a BOM.
GB18030 is read for GBK, since it is its superset. Anything else stops with the line to look at
and what to do, instead of a codec's byte offset.
"""

from __future__ import annotations

import codecs

SAVE_AS_UTF8 = (
    "save the file again as UTF-8 (Excel: File > Save As > 'CSV UTF-8 (comma delimited)'; "
    "WPS: Save As > CSV, encoding UTF-8) and import that"
)


class CsvEncodingError(ValueError):
    """The bytes are none of the encodings above; ``line`` is 1-based."""

    def __init__(self, line: int, detail: str) -> None:
        super().__init__(
            f"line {line}: the text is neither UTF-8 nor GBK/GB18030 ({detail}); {SAVE_AS_UTF8}"
        )
        self.line = line


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding) of a CSV file's bytes; newlines kept as they were.

    Raises ``CsvEncodingError`` naming the first line that decodes in none of them.
    """
    if data.startswith(codecs.BOM_UTF8):
        return _strict(data, "utf-8-sig"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _strict(data, "utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as as_utf8:
        try:
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError as as_gb:
            # The reading that got further is what the file was meant to be: its first bad
            # byte is the line to look at (a UTF-8 file fails GB18030 early, and the reverse).
            worst = max(as_utf8, as_gb, key=lambda e: e.start)
            raise _problem(data, worst) from None


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _problem(data, exc) from None


def _problem(data: bytes, exc: UnicodeDecodeError) -> CsvEncodingError:
    if exc.encoding.replace("-", "").startswith("utf16"):
        line = data[: exc.start].decode("utf-16", "replace").count("\n") + 1
    else:
        line = data[: exc.start].count(b"\n") + 1
    return CsvEncodingError(line, f"{exc.encoding} cannot read byte 0x{data[exc.start]:02x}")
