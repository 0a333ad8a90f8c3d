"""The Autoenhance v3 client: every upstream call the service makes goes through here.

Why it follows redirects by hand: `/enhanced` answers 302 to an asset host, and httpx only strips
`Authorization` on a cross-origin redirect, not our `x-api-key`. We follow each hop ourselves and
send the key (and `x-dev-mode`) only to the API's own origin.

Where a redirect may lead: the API's own origin, a host listed in ALLOWED_ASSET_HOSTS, or an https
URL whose host is public (checked on the addresses dialled: app/core/upstream/transport.py). Anything else (the
service itself, another loopback service, a cloud metadata address) is that image's failure, never
fetched, and not held against Autoenhance by the breaker.

Retries (stamina): 5xx, 429 (honouring Retry-After), timeouts, connection errors, truncated bodies
and expired asset links (a fresh 302 gives a fresh link); never other 4xx. Bounded in attempts and
in total time. Image bytes travel through a `Fetcher` (app/core/upstream/http1.py on a real network).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
import stamina

from app.core.delivery.sets import Rendition
from app.core.models import OrderInfo, parse_order
from app.core.network.addresses import refusal
from app.core.network.trusted_hosts import TrustedHosts
from app.core.spool import ImageTooLarge, Spool
from app.core.upstream.breaker import CircuitOpen, UpstreamGuard
from app.core.upstream.capped_body import ACCEPT_ENCODING, BodyTooLarge, bounded_response
from app.core.upstream.text import may_hold_surrogates, valid_json
from app.core.upstream.transport import Fetcher, HttpxFetcher, Reply, TargetRefused
from app.errors import (
    InvalidPageOffset,
    OrderNotFound,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamUnavailable,
)

log = logging.getLogger("app.upstream")

MAX_REDIRECTS = 5
REDIRECTS = frozenset((301, 302, 303, 307, 308))
DRAIN_LIMIT = 64 * 1024  # redirect bodies up to this are read so the connection is reused
MAX_RETRY_AFTER = 30.0
USER_AGENT = "autoenhance-batch/1.0"
DEFAULT_API_VERSION = "2026-11-09"
"""The Autoenhance API version every call asks for (`x-api-version`; AUTOENHANCE_API_VERSION changes it).

Each account is assigned the version current when it joined, and a request without the header gets
that one: pinning makes the answers this client reads the ones it was tested against."""
UPLOAD_URL_KEYS = ("upload_file_url", "upload_url", "s3PutObjectUrl")
"""Where create-image puts the upload URL: from 2026-11-09, 2025-05-08 to 2026-10-01, up to 2025-01-01."""
ORDER_SORTS = ("name", "-name", "date", "-date")
"""`sort` on GET /v3/orders/ (Autoenhance's default: -date, newest first)."""


def upload_url_of(created: dict[str, Any]) -> str | None:
    """The upload URL of a create-image answer, under whichever name the served API version uses."""
    for key in UPLOAD_URL_KEYS:
        value = created.get(key)
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
    return None


class Retryable(Exception):
    """A transient upstream failure; `retry_after` carries the server's wish when it said one."""

    def __init__(self, reason: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


@dataclass
class ImageDownloadFailed(Exception):
    """One image could not be fetched; `reason` and `recovery` are shown to the caller."""

    reason: str
    recovery: str
    status: int | None = None

    def __str__(self) -> str:
        return self.reason


RECOVER_RETRY = "Retry the batch later; images that succeeded are served again at no extra cost"
RECOVER_SINGLE = "Download it alone with GET /v3/images/{image_id}/enhanced, or retry the batch"
RECOVER_REFUSED = (
    "Autoenhance sent this image's download elsewhere than its own API or a public https host; if that host "
    "is yours and trusted, list it in ALLOWED_ASSET_HOSTS"
)


def _retry_after(response: httpx.Response | Reply) -> float | None:
    value = response.headers.get("retry-after") if isinstance(response, httpx.Response) else response.header("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _backoff(exc: Exception) -> bool | float:
    """stamina hook: whether to retry, and for Retry-After how long to wait."""
    if isinstance(exc, Retryable):
        return exc.retry_after if exc.retry_after is not None else True
    return isinstance(exc, (httpx.TimeoutException, httpx.TransportError))


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    parts = urlsplit(str(url))
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _safe(url: str) -> str:
    """A URL for a caller-facing message: scheme, host and port only (signed query strings stay out)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class AutoenhanceClient:
    """Async, typed access to the v3 endpoints the service needs."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        http: httpx.AsyncClient,
        attempts: int = 4,
        order_timeout: float = 30.0,
        image_timeout: float = 60.0,
        guard: UpstreamGuard | None = None,
        fetcher: Fetcher | None = None,
        asset_hosts: TrustedHosts = TrustedHosts(),
        max_json_bytes: int = 32 * 1024 * 1024,
        api_version: str | None = DEFAULT_API_VERSION,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        """Sent as `x-api-version` on every call to the API itself (None: the account's own version)."""
        self._api_prefix = f"{self.base_url}/v3/"
        self._api_origin = _origin(self.base_url)
        self._fetcher: Fetcher = fetcher or HttpxFetcher(http)
        self._asset_hosts = asset_hosts  # ALLOWED_ASSET_HOSTS; the fetcher trusts the same value (app/core/upstream/factory.py)
        self._api_key = api_key
        self._http = http
        self._attempts = attempts
        self._order_timeout = order_timeout
        self._image_timeout = image_timeout
        self.guard = guard or UpstreamGuard(None, threshold=1_000_000)  # no guard given: never opens
        self._max_json_bytes = max_json_bytes

    async def aclose(self) -> None:
        """Close the image-download path (the httpx client belongs to its creator, who closes it)."""
        await self._fetcher.aclose()

    # -- helpers ---------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}/v3/{path.lstrip('/')}"

    def _headers(self, url: str | httpx.URL, *, dev_mode: bool = False) -> dict[str, str]:
        """Credentials only for the API's own origin, never for an asset or storage host; the API
        version only on the API's own /v3/ calls (an upload or asset URL on the same origin is not one)."""
        headers = {"user-agent": USER_AGENT}
        if _origin(url) == self._api_origin:
            if self._api_key:
                headers["x-api-key"] = self._api_key
            if dev_mode:
                headers["x-dev-mode"] = "true"
            if self.api_version and str(url).startswith(self._api_prefix):
                headers["x-api-version"] = self.api_version
        return headers

    def _retrying(self, timeout: float) -> Any:
        return stamina.retry_context(
            on=_backoff, attempts=self._attempts, timeout=timeout, wait_initial=0.2, wait_max=5.0, wait_jitter=0.3
        )

    async def _json_call(self, method: str, path: str, *, what: str, **kwargs: Any) -> httpx.Response:
        """One JSON API call with retries; maps final failures to the error hierarchy."""
        url = self._url(path)
        try:
            async for attempt in self._retrying(self._order_timeout):
                with attempt:
                    async with self.guard.attempt():
                        headers = self._headers(url) | {"accept-encoding": ACCEPT_ENCODING}
                        request = self._http.build_request(method, url, headers=headers, **kwargs)
                        # decoded under a cap (app/core/upstream/capped_body.py): a gzip bomb stops at MAX_UPSTREAM_JSON_BYTES
                        response = await bounded_response(
                            await self._http.send(request, stream=True), self._max_json_bytes
                        )
                        if response.status_code == 429 or response.status_code >= 500:
                            log.warning("upstream %s answered %s: %.300s", what, response.status_code, response.text)
                            raise Retryable(
                                f"HTTP {response.status_code}", _retry_after(response), response.status_code
                            )
        except Retryable as exc:
            raise UpstreamUnavailable(
                f"Autoenhance API is unavailable ({what}: {exc.reason}); try again later"
            ) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(f"Autoenhance API timed out ({what}); try again later") from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Autoenhance API could not be reached ({what}); try again later") from exc
        except (BodyTooLarge, httpx.DecodingError) as exc:
            log.error("upstream %s answer refused: %s", what, exc)
            raise UpstreamBadResponse(f"Autoenhance sent an answer this service will not read ({what}: {exc})") from exc
        if response.status_code in (401, 403):
            log.error("upstream %s rejected our key (%s): %.300s", what, response.status_code, response.text)
            raise UpstreamAuthError()
        return response

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        """The parsed body, its text made valid Unicode (app/core/upstream/text.py) before anything else sees it."""
        try:
            data = response.json()
            return valid_json(data, what=what) if may_hold_surrogates(response.content) else data
        except (ValueError, RecursionError) as exc:
            log.error("upstream %s returned non-JSON (%s): %.300s", what, response.status_code, response.text)
            raise UpstreamBadResponse(f"Autoenhance returned a response this service cannot read ({what})") from exc

    # -- orders ----------------------------------------------------------------------------------

    async def get_order(self, order_id: str, sort: str | None = None) -> OrderInfo:
        """The order with its images in the photographer's order: `sort` (one of IMAGE_SORTS) when the
        caller chose one, else the order's own `default_image_sort_order`, asked for by name."""
        order = await self._fetch_order(order_id, sort)
        wanted = sort or order.default_sort
        if sort is None and wanted == "custom":
            # Only Autoenhance knows a custom arrangement: ask for it by name rather than trust the
            # default listing to follow it (whether it does is not documented).
            order = await self._fetch_order(order_id, wanted)
        return order.sorted_by(wanted, api_version=self.api_version)

    async def _fetch_order(self, order_id: str, sort: str | None) -> OrderInfo:
        params = {"sort_images_by": sort} if sort else None
        response = await self._json_call("GET", f"orders/{order_id}", what="order fetch", params=params)
        if response.status_code == 404:
            raise OrderNotFound(f"Order {order_id} was not found on Autoenhance")
        if response.status_code != 200:
            log.error("order fetch answered %s: %.300s", response.status_code, response.text)
            raise UpstreamError(f"Autoenhance refused the order fetch (HTTP {response.status_code})")
        return parse_order(order_id, self._json(response, "order fetch"))

    async def create_order(self, name: str) -> dict[str, Any]:
        response = await self._json_call("POST", "orders/", what="order creation", json={"name": name})
        return self._expect_json(response, "order creation")

    async def create_image(
        self, order_id: str, image_name: str, content_type: str, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """`settings`: enhancement choices (enhance_type, restage, vertical_correction, privacy, ...)."""
        body = {**(settings or {}), "order_id": order_id, "image_name": image_name, "content_type": content_type}
        response = await self._json_call("POST", "images/", what="image creation", json=body)
        return self._expect_json(response, "image creation")

    async def list_orders(
        self, per_page: int = 10, offset: str | None = None, *, q: str | None = None, sort: str | None = None
    ) -> dict[str, Any]:
        """One page of the account's orders; `q` searches their names, `sort` is one of ORDER_SORTS."""
        params: dict[str, Any] = {"per_page": per_page}
        if q:
            params["q"] = q
        if sort:
            params["sort"] = sort
        if offset:
            params["offset"] = offset
        response = await self._json_call("GET", "orders/", what="order listing", params=params)
        if offset and response.status_code in (400, 422):  # the caller's page token, not our fault
            raise InvalidPageOffset()
        return self._expect_json(response, "order listing")

    def _expect_json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        if response.status_code not in (200, 201):
            log.error("upstream %s answered %s: %.300s", what, response.status_code, response.text)
            raise UpstreamError(f"Autoenhance refused the {what} (HTTP {response.status_code})")
        data = self._json(response, what)
        if not isinstance(data, dict):
            raise UpstreamBadResponse(f"Autoenhance returned a response this service cannot read ({what})")
        return data

    async def upload(self, upload_url: str, data: bytes, content_type: str) -> None:
        """PUT the image bytes to the pre-signed URL (credentials only if it is the API's origin)."""
        headers = self._headers(upload_url) | {"content-type": content_type}
        try:
            async for attempt in self._retrying(self._image_timeout):
                with attempt:
                    response = await self._http.put(upload_url, content=data, headers=headers)
                    if response.status_code >= 500 or response.status_code == 429:
                        raise Retryable(f"HTTP {response.status_code}", _retry_after(response))
        except (Retryable, httpx.TransportError) as exc:
            raise UpstreamUnavailable("Uploading to Autoenhance failed; try again later") from exc
        if response.status_code >= 300:
            log.error("upload answered %s: %.300s", response.status_code, response.text)
            raise UpstreamError(f"Autoenhance refused the upload (HTTP {response.status_code})")

    # -- image downloads -------------------------------------------------------------------------

    async def download_enhanced(self, image_id: str, options: Rendition, spool: Spool) -> None:
        """Fetch one rendition (enhanced, or the original) into `spool`, retrying transient failures.

        Raises ImageDownloadFailed with a caller-facing reason when the image cannot be had.
        """
        url = self._url(options.path(image_id))
        try:
            async with asyncio.timeout(self._image_timeout):
                async for attempt in self._retrying(self._image_timeout):
                    with attempt:
                        spool.reset()
                        async with self.guard.attempt():
                            await self._download_once(url, options, spool)
        except ImageDownloadFailed:
            raise
        except CircuitOpen as exc:
            raise ImageDownloadFailed(
                f"not tried: Autoenhance was failing repeatedly (circuit breaker open for {exc.retry_after} s)",
                RECOVER_RETRY,
            ) from exc
        except TimeoutError as exc:
            raise ImageDownloadFailed(
                f"timed out after {self._image_timeout:g} s (IMAGE_TIMEOUT_SECONDS)", RECOVER_RETRY
            ) from exc
        except Retryable as exc:
            raise ImageDownloadFailed(f"Autoenhance kept failing ({exc.reason})", RECOVER_RETRY) from exc
        except httpx.TimeoutException as exc:
            raise ImageDownloadFailed(f"timed out after retries ({type(exc).__name__})", RECOVER_RETRY) from exc
        except httpx.TransportError as exc:
            raise ImageDownloadFailed(f"connection failed after retries ({type(exc).__name__})", RECOVER_RETRY) from exc
        except ImageTooLarge as exc:
            raise ImageDownloadFailed(str(exc), RECOVER_SINGLE) from exc

    async def _download_once(self, url: str, options: Rendition, spool: Spool) -> None:
        query = options.upstream_query()
        # Plain string work: httpx.URL's parser cost ~150 us per image (ENGINEERING_LOG). The values are
        # short tokens (format, true/false, numbers); a Location then carries its own query.
        target = f"{url}{'&' if '?' in url else '?'}{urlencode(query)}" if query else url
        for hop in range(MAX_REDIRECTS + 1):
            try:
                if hop:
                    self._check_redirect(target)
                async with self._fetcher.get(target, self._headers(target, dev_mode=options.dev_mode)) as reply:
                    if reply.status in REDIRECTS:
                        location = reply.header("location")
                        if not location:
                            raise ImageDownloadFailed(
                                "Autoenhance sent a redirect without a location", RECOVER_RETRY, reply.status
                            )
                        target = urljoin(reply.url, location)
                        await reply.drain(DRAIN_LIMIT)
                        continue
                    self._raise_for_image_status(reply, on_api=hop == 0)
                    await self._read_body(reply, spool)
                    return
            except TargetRefused as exc:
                raise ImageDownloadFailed(f"redirect refused: {exc}", RECOVER_REFUSED) from None
        raise ImageDownloadFailed(f"too many redirects (more than {MAX_REDIRECTS})", RECOVER_SINGLE)

    def _check_redirect(self, url: str) -> None:
        """Refuse a redirect target outside the API's origin, ALLOWED_ASSET_HOSTS and public https.

        A host name is checked again when it is resolved, on the addresses then dialled (fetch.py);
        an address literal is the address dialled, so it is checked here.
        """
        parts = urlsplit(url)
        origin = _origin(url)
        if origin == self._api_origin or self._asset_hosts.trusts(origin[1], origin[2]):
            return
        if parts.scheme != "https":
            raise TargetRefused(f"{_safe(url)} is not https (only the API's own origin may be plain http)")
        try:
            address = ipaddress.ip_address(origin[1].strip("[]"))
        except ValueError:
            return
        reason = refusal(address)
        if reason is not None:
            raise TargetRefused(f"{address} is {reason}")

    @staticmethod
    def _raise_for_image_status(response: Reply, *, on_api: bool) -> None:
        """`on_api`: the API answered itself; otherwise we are at the asset a redirect pointed to."""
        status = response.status
        if status == 200:
            return
        if status == 429 or status >= 500:
            raise Retryable(f"HTTP {status}", _retry_after(response), status)
        if not on_api and status == 403:
            raise Retryable("the asset link had expired (HTTP 403)")
        if on_api and status in (401, 403):
            raise ImageDownloadFailed(
                f"Autoenhance refused the download (HTTP {status}): the API key may lack credits or access",
                "Check the account's credits and key, or retry with preview=true or dev_mode=true",
                status,
            )
        if status == 404:
            where = "Autoenhance" if on_api else "the asset host"
            raise ImageDownloadFailed(
                f"not available from {where} (HTTP 404): still processing, or deleted",
                "Wait until the image shows status 'processed', then retry the batch",
                status,
            )
        raise ImageDownloadFailed(f"Autoenhance refused the download (HTTP {status})", RECOVER_SINGLE, status)

    @staticmethod
    async def _read_body(response: Reply, spool: Spool) -> None:
        length = response.header("content-length") or ""
        announced = int(length) if length.isdigit() else None
        if announced is not None and announced > spool.max_bytes:
            # refuse before reading a byte (MAX_IMAGE_BYTES); the spool also stops a body that lies
            raise ImageTooLarge(f"image of {announced} bytes is over the {spool.max_bytes} byte limit (MAX_IMAGE_BYTES)")
        write = spool.write
        async for chunk in response.chunks():
            write(chunk)
        received = response.received
        if announced is not None and announced != received:
            raise Retryable(f"body shorter than announced ({received} of {announced} bytes)")
        if spool.size == 0:
            raise Retryable("empty body")
