"""The push channel: a port and its adapters, FCM through firebase-admin and a log channel.

`FcmPush` sends with `messaging.send_each_async` (one HTTP request per message, at most 500 per
call) and sorts every answer into a `PushOutcome` the outbox acts on: delivered, token_gone
(deactivate the device), retry (later, not before `retry_after`), failed (give up). Without
credentials or `FCM_URL`, `LogPush` logs what would have been sent.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections.abc import Generator, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

import firebase_admin
import google.auth.credentials
import httpx
import msgspec
from firebase_admin import _http_client, _retry, credentials, exceptions, messaging
from google.auth.transport import requests as google_auth_requests

from infra.config import Settings
from notifications.http1 import Http1Transport, tls_context

log = logging.getLogger(__name__)

BATCH = 500  # send_each_async refuses longer lists
_TIMEOUT_S = 30  # per attempt (the app option `httpTimeout`); the SDK's 120 s would hold a whole batch that long
_APP_IDS = itertools.count(1)


class PushMessage(msgspec.Struct, frozen=True, kw_only=True):
    token: str  # the device's FCM registration token
    title: str
    body: str
    data: dict[str, str] = {}
    # The notification's id: a newer push with the same key replaces an undelivered or shown older one.
    collapse_key: str | None = None
    urgent: bool = False  # wakes the device now (Android priority high, APNs priority 10)


PushState = Literal["delivered", "token_gone", "retry", "failed"]


class PushOutcome(msgspec.Struct, frozen=True):
    state: PushState
    error: str | None = None  # FCM's error code, e.g. UNREGISTERED, INVALID_ARGUMENT:message.android.ttl
    retry_after: float | None = None  # seconds, from a Retry-After header


DELIVERED = PushOutcome("delivered")


class Push(Protocol):
    async def send(self, messages: Sequence[PushMessage]) -> list[PushOutcome]:
        """One outcome per message, in order."""
        ...

    async def aclose(self) -> None: ...


def mask_token(token: str) -> str:
    return token[:6] + "…"


def outcome_of(error: exceptions.FirebaseError) -> PushOutcome:
    """Sort a failed send: whether the token is dead, the send may succeed later, or never will."""
    response: httpx.Response | None = error.http_response
    details = _error_details(response)
    code = next((d.get("errorCode") for d in details if d.get("@type", "").endswith("fcm.v1.FcmError")), None)
    code = code or error.code
    if isinstance(error, messaging.UnregisteredError | messaging.SenderIdMismatchError):
        return PushOutcome("token_gone", code)
    if isinstance(error, exceptions.InvalidArgumentError):
        fields = [v.get("field") for d in details for v in d.get("fieldViolations", [])]
        # FCM names the bad field; an older answer only says "registration token" in its message.
        about_token = "message.token" in fields or (not fields and "registration token" in str(error))
        return PushOutcome("token_gone" if about_token else "failed", ":".join([code, *map(str, fields)]))
    transient = (
        exceptions.ResourceExhaustedError
        | exceptions.UnavailableError
        | exceptions.InternalError
        | exceptions.DeadlineExceededError
    )
    # A connection dropped mid-answer comes as UnknownError caused by the httpx error; a proxy's
    # 502 or 504 as UnknownError with that response.
    if (
        isinstance(error, transient)
        or isinstance(error.cause, httpx.TransportError)
        or (response is not None and response.status_code >= 500)
    ):
        return PushOutcome("retry", code, _retry_after(response))
    return PushOutcome("failed", code)


def _error_details(response: httpx.Response | None) -> list[dict[str, Any]]:
    """The `details` of a Google API error body, or none if the body is not one."""
    if response is None:
        return []
    try:
        details = response.json()["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return []
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _retry_after(response: httpx.Response | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    value = response.headers.get("retry-after", "").strip() if response is not None else ""
    if value.isdigit():
        return float(value)
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


class _AnonymousCredential(credentials.Base):  # type: ignore[misc]  # firebase_admin is untyped
    """For a local FCM server: requests carry no Authorization header and need no OAuth."""

    def get_credential(self) -> google.auth.credentials.Credentials:
        return google.auth.credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]


class FcmPush:
    """Push through FCM with firebase-admin, on a named app of its own.

    Two things firebase-admin offers no option for are set on its internals, once, here:

    - The endpoint. The SDK formats the class attribute `_MessagingService.FCM_URL` when it creates
      an app's messaging service; it is set around that one creation and put back, so this app keeps
      `FCM_URL` and other apps keep theirs.
    - The HTTP client. The SDK's httpx client is replaced by one built much the same way (its
      Google-auth flow, its retry transport: up to 4 retries on 500 and 503, backing off 0, 1, 2, 4 s,
      Retry-After ignored, nothing else retried), cheaper per message where the SDK's spends for
      nothing:

      - It speaks HTTP/1.1 on up to `_CONNECTIONS` keep-alive connections, one request on each at a
        time, through `notifications.http1` rather than httpcore (whose h11 and anyio cost a
        dispatcher two fifths of its time). FCM answers HTTP/1.1 over TLS, as the SDK's synchronous
        calls use it; the SDK's async client would use HTTP/2.
      - Each answer is read whole and its connection given back at once. The SDK's retry transport
        never closes an answer it retries, so with its client a batch with more than 25 messages
        answered 503 or 500 used up the 100 streams of its one HTTP/2 connection and hung.
      - No cookie jar (FCM sets no cookies; httpx searches every answer for them), the SDK's one URL
        parsed once, its retry settings copied without `deepcopy`, no OAuth flow for the anonymous
        credential of a local server, and a service account's flow keeps one transport for
        refreshing its token instead of making one for every request.

      Being ours, the client is also closed in the event loop that used it (the SDK would close it
      with `asyncio.run`, which cannot run inside one).

    The app and its connections belong to the event loop of the first send: use one FcmPush per loop.
    """

    def __init__(self, settings: Settings, *, wire: httpx.AsyncBaseTransport | None = None) -> None:
        """`wire` carries the requests (behind the SDK's retries); by default HTTP/1.1 connections to the server."""
        if settings.fcm_credentials_file is not None:
            credential: credentials.Base = credentials.Certificate(str(settings.fcm_credentials_file))
        else:
            credential = _AnonymousCredential()
        options: dict[str, object] = {"httpTimeout": _TIMEOUT_S}
        if settings.fcm_project_id:
            options["projectId"] = settings.fcm_project_id
        self._app = firebase_admin.initialize_app(credential, options, name=f"socialcard-push-{next(_APP_IDS)}")
        service = _messaging_service(self._app, settings.fcm_url)
        google_credential = service._credential
        anonymous = isinstance(google_credential, google.auth.credentials.AnonymousCredentials)
        self._http = _Client(
            headers=_http_client.METRICS_HEADERS,
            auth=None if anonymous else _CredentialFlow(google_credential),
            transport=_RetryTransport(wire or Http1Transport(_CONNECTIONS, tls_context())),
        )
        service._async_client._async_client = self._http

    async def send(self, messages: Sequence[PushMessage]) -> list[PushOutcome]:
        outcomes: list[PushOutcome] = []
        for start in range(0, len(messages), BATCH):
            batch = [_fcm_message(m) for m in messages[start : start + BATCH]]
            response = await messaging.send_each_async(batch, app=self._app)
            outcomes += [DELIVERED if r.success else outcome_of(r.exception) for r in response.responses]
        return outcomes

    async def aclose(self) -> None:
        await self._http.aclose()
        # delete_app closes the app's services with asyncio.run(), which needs a thread without a
        # running loop; the client it would close is the one just closed.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)


# Requests at once, each on a keep-alive connection: 2,000 messages/s to a server whose answers
# take up to 30 ms (FCM's from a nearby data centre, or the local server's --latency-ms).
_CONNECTIONS = 64


def _messaging_service(app: firebase_admin.App, url: str | None) -> Any:
    """The app's messaging service, created now so that it takes `url` (None: FCM's own)."""
    if url is None:
        return messaging._get_messaging_service(app)
    saved = messaging._MessagingService.FCM_URL
    messaging._MessagingService.FCM_URL = url
    try:
        return messaging._get_messaging_service(app)
    finally:
        messaging._MessagingService.FCM_URL = saved


class _Retry(_retry.HttpxRetry):  # type: ignore[misc]
    """The SDK's retry settings; copied for each request as the SDK does, without its deepcopy."""

    def copy(self) -> _Retry:
        fresh = copy.copy(self)
        fresh.history = list(self.history)
        return fresh


_RETRY = _Retry(
    max_retries=_http_client.DEFAULT_HTTPX_RETRY_CONFIG.retries_left,
    status_forcelist=_http_client.DEFAULT_HTTPX_RETRY_CONFIG.status_forcelist,
    backoff_factor=_http_client.DEFAULT_HTTPX_RETRY_CONFIG.backoff_factor,
)


class _RetryTransport(_retry.HttpxRetryTransport):  # type: ignore[misc]
    """The SDK's retry transport (`_RETRY`) over `wire` instead of an httpx transport of its making."""

    def __init__(self, wire: httpx.AsyncBaseTransport) -> None:  # the SDK's would build one, to no use
        self._retry = _RETRY
        self._wrapped_transport = wire


class _CredentialFlow(_http_client.GoogleAuthCredentialFlow):  # type: ignore[misc]
    """The SDK's flow (a token on each request, refreshed on 401 up to twice) with one transport for refreshes.

    The SDK's makes a google-auth transport, a `requests.Session`, for every request it sends.
    """

    def __init__(self, credential: google.auth.credentials.Credentials) -> None:
        super().__init__(credential)
        self._auth_request = google_auth_requests.Request()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        headers = request.headers
        for attempt in itertools.count():
            request.headers = headers.copy()
            self._credential.before_request(self._auth_request, request.method, str(request.url), request.headers)
            response = yield request
            if response.status_code not in self._refresh_status_codes or attempt == self._max_refresh_attempts:
                return
            self._credential.refresh(self._auth_request)


class _NoCookies(httpx.Cookies):
    """FCM sets no cookies, and httpx's search of every answer for them costs more than sending it does."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _Client(httpx.AsyncClient):
    """An httpx client without a cookie jar, that parses the SDK's one URL once rather than on every request."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._no_cookies = _NoCookies()
        self._urls: dict[str, httpx.URL] = {}

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        if not isinstance(url, str):
            return super()._merge_url(url)
        merged = self._urls.get(url)
        if merged is None:
            if len(self._urls) >= 64:  # the SDK sends to one URL; a bound all the same
                self._urls.clear()
            merged = self._urls[url] = super()._merge_url(url)
        return merged

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the FCM client keeps no cookies")


def _fcm_message(message: PushMessage) -> messaging.Message:
    apns_headers = {"apns-priority": "10" if message.urgent else "5"}
    if message.collapse_key is not None:
        apns_headers["apns-collapse-id"] = message.collapse_key
    # `token`, though firebase-admin 7.5 deprecates it for `fid`: devices report registration
    # tokens, and a Firebase installation id is another identifier.
    return messaging.Message(
        token=message.token,
        notification=messaging.Notification(title=message.title, body=message.body),
        data=message.data or None,
        android=messaging.AndroidConfig(
            priority="high" if message.urgent else "normal",
            collapse_key=message.collapse_key,
            notification=messaging.AndroidNotification(tag=message.collapse_key),
        ),
        apns=messaging.APNSConfig(headers=apns_headers),
    )


class LogPush:
    """Sends nothing: logs what would have been sent (no body, the token masked) and reports delivered."""

    async def send(self, messages: Sequence[PushMessage]) -> list[PushOutcome]:
        for m in messages:
            log.info(
                "push not sent (log channel)",
                extra={
                    "token": mask_token(m.token),
                    "title": m.title,
                    "chars": len(m.body),
                    "data_keys": sorted(m.data),
                    "collapse_key": m.collapse_key,
                    "urgent": m.urgent,
                },
            )
        return [DELIVERED] * len(messages)

    async def aclose(self) -> None:
        return None


def push_channel(settings: Settings) -> Push:
    """FCM when a service account or a local FCM server is configured, the log channel otherwise."""
    if settings.fcm_credentials_file is not None or settings.fcm_url is not None:
        return FcmPush(settings)
    return LogPush()
