"""Rate limits: token buckets per API key and, for requests without a known key, per client address.

A flood must be refused before it costs anything, so :class:`RateLimitMiddleware` is the outermost
layer of the application but for the security headers (which its 429s carry too) and decides
from the request's headers alone, in O(1): no database
read, no body read, no image decoding. Each identity owns a bucket of ``burst`` tokens refilled at
``rate`` tokens per second; a request takes one token or is answered ``429`` (``code:
rate_limited``) with a ``Retry-After`` header giving the whole seconds until a token is back.

Which bucket a request draws on:

* a request carrying a key the service has accepted before (a response that named the key's
  actor, 403 included) draws on that key's bucket, so a flooding key never slows another key;
* every other request (no key, or a key not yet seen to authenticate) draws on its client
  address's *anonymous* bucket. Random keys therefore cannot buy fresh buckets, and a key's
  bucket is only ever created for a key that exists, which also bounds the memory. The price:
  while that bucket is empty, a key's very first request from the same address waits too.

The buckets live in this process (``--workers N`` gives each worker its own) and are bounded in
number (the least recently used identity is forgotten, i.e. starts again with a full bucket).
The token bucket is Turner's "New directions in communications", IEEE Comm. Magazine 24(10), 1986.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from poisonlab.service.errors import error_response

#: Cheap, key-less probes an orchestrator polls: never limited, so a flood cannot fail liveness.
EXEMPT_PATHS = frozenset({"/v1/health"})


class TokenBuckets:
    """One token bucket per identity, ``rate`` tokens per second up to ``burst``; O(1) per call.

    Parameters
    ----------
    rate : float
        Tokens added per second (the sustained request rate); ``0`` disables the limit.
    burst : int
        Bucket size: the most requests admitted at once after a quiet period.
    max_identities : int
        Most buckets kept; beyond it the least recently used one is dropped.
    clock : callable
        Seconds, monotonic (``time.monotonic``); injected by the tests.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_identities: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate < 0 or burst < 1 or max_identities < 1:
            raise ValueError(
                f"rate must be >= 0, burst and max_identities >= 1; got {rate}, {burst}, {max_identities}"
            )
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.max_identities = max_identities
        self._buckets: OrderedDict[object, list[float]] = OrderedDict()  # identity -> [tokens, stamp]
        self._lock = threading.Lock()

    def __contains__(self, identity: object) -> bool:
        with self._lock:
            return identity in self._buckets

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, identity: object) -> float:
        """Take one token: ``0.0`` when admitted, else the seconds until a token is available."""
        if self.rate == 0:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(identity)
            if bucket is None:
                bucket = self._add(identity, now)
            else:
                self._buckets.move_to_end(identity)
                bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.rate

    def admit(self, identity: object) -> None:
        """Give ``identity`` a full bucket unless it has one (a key seen to authenticate)."""
        with self._lock:
            if identity not in self._buckets:
                self._add(identity, self.clock())

    def _add(self, identity: object, now: float) -> list[float]:
        if len(self._buckets) >= self.max_identities:
            self._buckets.popitem(last=False)
        bucket = self._buckets[identity] = [self.burst, now]
        return bucket


def client_address(scope: Scope) -> str:
    """The peer address of an ASGI connection (``"unknown"`` when the server gives none)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def key_digest(scope: Scope) -> bytes | None:
    """sha256 of the API key a request carries (``X-API-Key`` or ``Authorization: Bearer``), if any.

    The digest, not the key, is what the limiter remembers: no secret is kept in its tables.
    """
    key = None
    for name, value in scope["headers"]:
        if name == b"x-api-key" and value:
            key = value
            break
        if name == b"authorization" and value[:7].lower() == b"bearer " and value[7:].strip():
            key = value[7:].strip()
    return None if key is None else hashlib.sha256(key).digest()


class RateLimitMiddleware:
    """ASGI middleware applying :class:`TokenBuckets` per key and per anonymous address.

    Parameters
    ----------
    app : ASGI app
        The application (everything behind the limiter).
    keys, anonymous : TokenBuckets
        Buckets of accepted keys (by key digest), and of everything else (by client address).
    on_limited : callable, optional
        Called with ``"key"`` or ``"address"`` for every refused request (metrics).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: TokenBuckets,
        anonymous: TokenBuckets,
        on_limited: Callable[[str], None] | None = None,
    ) -> None:
        self.app, self.keys, self.anonymous, self.on_limited = app, keys, anonymous, on_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        digest = key_digest(scope)
        if digest is not None and digest in self.keys:
            kind, wait = "key", self.keys.take(digest)
        else:
            kind, wait = "address", self.anonymous.take(client_address(scope))
        if wait > 0:
            await self._refuse(kind, wait, scope, receive, send)
            return
        await self.app(scope, receive, send)
        # The authentication dependency leaves the actor on the request's state (403s included):
        # only then is the key real, and worth a bucket of its own.
        if digest is not None and scope.get("state", {}).get("actor") is not None:
            self.keys.admit(digest)

    async def _refuse(self, kind: str, wait: float, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_limited is not None:
            self.on_limited(kind)
        buckets = self.keys if kind == "key" else self.anonymous
        who = "per API key" if kind == "key" else "per client address without an accepted API key"
        retry = max(1, math.ceil(wait))
        response = error_response(
            429,
            f"rate limit: at most {buckets.rate:g} requests per second {who} "
            f"(bursts of {buckets.burst:g}); retry in {retry} s",
            "rate_limited",
        )
        response.headers["Retry-After"] = str(retry)
        await response(scope, receive, send)
