"""A python-telegram-bot request backend on aiohttp, for the outbox sender.

PTB's default backend (httpx) topped out at about 330 sends/s against a local Bot API on this
project's 2-core machine (most of it in httpcore's pool bookkeeping and a failed ``sniffio``
import on every request); this one carries 1,000+/s, which the sender needs to keep up with
paid-broadcast rates. It plugs in through PTB's documented ``BaseRequest`` interface, so every
``Bot`` method, error mapping (``RetryAfter``, ``Forbidden``, …) and JSON parsing stays PTB's.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


def _seconds(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


class AiohttpRequest(BaseRequest):
    """One ``aiohttp.ClientSession`` with a bounded connection pool and explicit timeouts."""

    def __init__(
        self,
        connections: int = 64,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        write_timeout: float = 10.0,
        pool_timeout: float = 10.0,
        media_write_timeout: float = 30.0,
    ) -> None:
        self._connections = connections
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=30),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("AiohttpRequest is not initialized")
        files = request_data.multipart_data if request_data else None
        data: Any = None
        headers: dict[str, str] | None = None
        if request_data is not None:
            if files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mime) in files.items():
                    form.add_field(name, content, filename=filename, content_type=mime)
                data = form
            else:  # encoded here: aiohttp's FormData costs more than the rest of a send
                data = request_data.url_encoded_parameters().encode()
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
        write = _seconds(write_timeout, self._media_write_timeout if files else self._write_timeout)
        read = _seconds(read_timeout, self._read_timeout)
        # aiohttp's ``connect`` covers waiting for a pooled connection and opening one.
        connect = sum(
            t or 0.0
            for t in (
                _seconds(pool_timeout, self._pool_timeout),
                _seconds(connect_timeout, self._connect_timeout),
            )
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect or None,
            sock_read=max(t for t in (read, write, 0.0) if t is not None) or None,
        )
        try:
            async with self._session.request(
                method, url, data=data, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut(f"aiohttp: {exc!r}") from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc
