"""Image URLs in chat messages -> H x W x 3 uint8 RGB arrays.

``data:`` URLs are always accepted. http(s) URLs are fetched only from hosts on an allow-list
(fetching arbitrary addresses on a client's behalf would expose the server's network), without
following redirects, within a size and a time limit. Decoded images count against a pixel budget
shared by all requests (``PixelBudget``): an image is decoded only once its pixels are granted.
"""
from __future__ import annotations

import base64
import binascii
import io
import threading
from typing import Callable
from urllib.parse import urlsplit

import anyio
import httpx
import numpy as np

from ..errors import one_line
from .errors import ApiError
from .settings import ServerSettings

MIN_IMAGE_SIDE = 8        # smaller images are ambiguous to image processors (1 or 3 rows read as channels)
MAX_ASPECT_RATIO = 20.0   # longer strips would be resized into huge arrays
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # what OpenAI's API accepts; other decoders are not exposed


class PixelBudget:
    """Pixels of decoded images held at once by all requests (from decoding until their job ends).
    A request takes its image's pixels (width x height, read from the header) before decoding it;
    when they do not fit, it gets 503 with ``Retry-After`` and nothing is decoded. So the memory of
    decoded images and of what the model runtime makes of them is bounded by pixels, whatever their
    sizes and the number of requests."""

    def __init__(self, capacity: int, retry_after_s: Callable[[], int]) -> None:
        self.capacity = capacity
        self._retry_after_s = retry_after_s
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """Pixels granted now."""
        with self._lock:
            return self._held

    def hold(self) -> "PixelHold":
        """An empty hold for one request."""
        return PixelHold(self)

    def _take(self, pixels: int, where: str) -> None:
        with self._lock:
            if self._held + pixels <= self.capacity:
                self._held += pixels
                return
        raise ApiError(503, f"{where}: the server is busy decoding or holding other images ({self.capacity} pixels at "
                            f"most at once); retry later", param=where,
                       headers={"Retry-After": str(self._retry_after_s())})

    def _give_back(self, pixels: int) -> None:
        with self._lock:
            self._held -= pixels


class PixelHold:
    """The pixels one request holds in a ``PixelBudget``; ``release`` may be called more than once."""

    def __init__(self, budget: PixelBudget) -> None:
        self._budget = budget
        self._pixels = 0
        self._lock = threading.Lock()

    def take(self, pixels: int, where: str) -> None:
        """Hold ``pixels`` more, else 503 ``ApiError`` naming ``where``."""
        self._budget._take(pixels, where)
        with self._lock:
            self._pixels += pixels

    def release(self, *_: object) -> None:
        """Give every held pixel back (also usable as a future's done callback)."""
        with self._lock:
            pixels, self._pixels = self._pixels, 0
        if pixels:
            self._budget._give_back(pixels)


class ImageLoader:
    """Turns an ``image_url.url`` into an RGB array, enforcing the server's fetch policy."""

    def __init__(self, settings: ServerSettings) -> None:
        self._settings = settings

    async def load(self, url: str, where: str, hold: PixelHold) -> np.ndarray:
        """The image at ``url``, its pixels added to ``hold`` before it is decoded; errors are 400
        ``ApiError`` naming ``where`` (the request field), 503 when the pixel budget is spent."""
        if url.startswith("data:"):
            data = _data_url_bytes(url, where, self._settings.max_body_bytes)
        else:
            data = await self._fetch(url, where)
        return await anyio.to_thread.run_sync(_decode_image, data, where, self._settings.max_image_pixels, hold)

    def host_allowed(self, url: str) -> bool:
        """True when ``url`` is http(s) and its host (or host:port) is on the allow-list."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            return False
        host = parts.hostname.lower()
        try:
            port = parts.port
        except ValueError:
            return False
        allowed = self._settings.allowed_image_hosts
        return host in allowed or (port is not None and f"{host}:{port}" in allowed)

    async def _fetch(self, url: str, where: str) -> bytes:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ApiError(400, f"{where}: unsupported image URL scheme {scheme!r}; send a data: URL "
                                "(data:image/png;base64,...)", param=where)
        if not self.host_allowed(url):
            if not self._settings.allowed_image_hosts:
                raise ApiError(400, f"{where}: fetching http(s) image URLs is disabled on this server; send the "
                                    "image inline as a data: URL (the operator can allow hosts with "
                                    "--allow-image-host)", param=where)
            raise ApiError(400, f"{where}: image host {urlsplit(url).netloc!r} is not on this server's allow-list",
                           param=where)
        limit = self._settings.image_fetch_max_bytes
        try:
            with anyio.fail_after(self._settings.image_fetch_timeout_s):
                async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
                    async with client.stream("GET", url) as response:
                        if response.status_code != 200:
                            raise ApiError(400, f"{where}: fetching the image returned HTTP {response.status_code} "
                                                "(redirects are not followed)", param=where)
                        declared = response.headers.get("content-length")
                        if declared is not None and declared.isdigit() and int(declared) > limit:
                            raise _too_large(where, limit)
                        chunks, size = [], 0
                        async for chunk in response.aiter_bytes():
                            size += len(chunk)
                            if size > limit:
                                raise _too_large(where, limit)
                            chunks.append(chunk)
                        return b"".join(chunks)
        except TimeoutError:
            raise ApiError(400, f"{where}: fetching the image took longer than "
                                f"{self._settings.image_fetch_timeout_s:g} s", param=where) from None
        except httpx.HTTPError as exc:
            raise ApiError(400, f"{where}: cannot fetch the image: {type(exc).__name__}: {exc}", param=where) from None


def _too_large(where: str, limit: int) -> ApiError:
    return ApiError(400, f"{where}: image is larger than the server's limit of {limit} bytes", param=where)


def _data_url_bytes(url: str, where: str, limit: int) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep:
        raise ApiError(400, f"{where}: malformed data URL (no comma)", param=where)
    if not header.endswith(";base64"):
        raise ApiError(400, f"{where}: data URL must be base64 encoded (data:image/png;base64,...)", param=where)
    if len(payload) > limit * 4 // 3 + 4:
        raise _too_large(where, limit)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: data URL payload is not valid base64", param=where) from None


def _decode_image(data: bytes, where: str, max_pixels: int, hold: PixelHold) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ApiError(400, f"{where}: image is {width}x{height}, more than the server's limit of "
                                    f"{max_pixels} pixels", param=where)
            if min(width, height) < MIN_IMAGE_SIDE:
                raise ApiError(400, f"{where}: image is {width}x{height}; each side must be at least "
                                    f"{MIN_IMAGE_SIDE} pixels", param=where)
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                raise ApiError(400, f"{where}: image is {width}x{height}; the longer side may be at most "
                                    f"{MAX_ASPECT_RATIO:g} times the shorter", param=where)
            hold.take(width * height, where)
            image.load()
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ApiError(400, f"{where}: not a readable image ({', '.join(IMAGE_FORMATS)})", param=where) from None
    except ApiError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise many types on malformed client data
        raise ApiError(400, f"{where}: cannot decode the image: {type(exc).__name__}: "
                            f"{one_line(exc)[:200]}", param=where) from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ApiError(400, f"{where}: image is empty", param=where)
    return rgb
