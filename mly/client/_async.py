"""``AsyncClient``: the asyncio driver of ``ClientCore`` (httpx.AsyncClient).

The twin of ``_sync.Client``: the same core calls in the same order; only the
I/O is awaited. The cache tiers run on the caller's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx

from mly.cache.tiered import TieredCache
from mly.client._core import ClientCore, parse_dictionary, parse_meta
from mly.client._stores import build_cache
from mly.client.errors import error_from_response
from mly.client.hosts import Host, HostPool, exhausted
from mly.client.message import Message
from mly.client.options import ClientOptions
from mly.client.response import Response
from mly.common.dictionary import Dictionary
from mly.common.meta import ModelMeta

__all__ = ["AsyncClient"]

log = logging.getLogger("mly.client")

_JSON = {"Content-Type": "application/json"}


class AsyncClient:
    """The asyncio client: ``async with AsyncClient("ctr", hosts=[...]) as c: await c.predict(...)``.

    Construction does no I/O; ``start()`` (or ``async with``, or the first
    ``predict``) fetches the model's ``meta/config`` and ``meta/dictionary``.
    Use it from one event loop.
    """

    def __init__(self, model: str, hosts: Sequence[str] | str, *, options: ClientOptions | None = None,
                 **overrides: Any) -> None:
        self.options = opts = ClientOptions.of(options, overrides)
        self._core = ClientCore(model, opts)
        self._pool = HostPool(hosts, model, backoff_s=opts.host_backoff_s, backoff_cap_s=opts.host_backoff_cap_s)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(opts.timeout_s, connect=opts.connect_timeout_s), trust_env=False,
        )
        self._owns_cache = opts.datastore is None
        self._start_lock: asyncio.Lock | None = None
        self._refresher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ API

    @property
    def model(self) -> str:
        return self._core.model

    @property
    def dict_hash(self) -> int:
        state = self._core.state
        if state is None:
            raise RuntimeError("AsyncClient not started: await start() or use 'async with'")
        return state.dict_hash

    @property
    def cache(self) -> TieredCache | None:
        return self._core.cache

    def new_message(self) -> Message:
        return Message()

    async def start(self) -> AsyncClient:
        """Fetch the model's config and dictionary and build the cache (once)."""
        if self._core.state is not None:
            return self
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._core.state is None:
                opts = self.options
                meta = parse_meta(opts.remote_config) if opts.remote_config is not None else await self._fetch_meta()
                dictionary = (parse_dictionary(opts.dictionary) if opts.dictionary is not None
                              else await self._fetch_dictionary())
                cache = opts.datastore if opts.datastore is not None else build_cache(meta, opts)
                self._core.install(meta, dictionary, cache)
        return self

    async def predict(self, inputs: Any, *, into: type | None = None) -> Response:
        """One row (a dict) or rows (a list of dicts); ``into`` types each result row."""
        core = self._core
        if core.state is None:
            await self.start()
        hit = core.fast(inputs, into)
        if hit is not None:
            return hit
        plan = core.plan(core.request_of(inputs))
        if plan.keys is not None and core.cache is not None:
            core.absorb(plan, await core.cache.get_many(plan.keys, plan.state.dict_hash))
            if not plan.misses:
                return core.cached(plan, into)
        answer = await self._send("eval_url", core.body(plan))
        response, stale = core.finish(plan, answer.status_code, answer.content, into)
        if stale:
            self._refresh_soon()
        return response

    async def run(self, message: Message, *, into: type | None = None) -> Response:
        """Predict a ``Message`` (the Go client's ``Run``)."""
        if not isinstance(message, Message):
            raise TypeError(f"run: expected a Message, got {type(message).__name__}")
        return await self.predict(message.request(), into=into)

    async def refresh(self) -> None:
        """Fetch the dictionary (and config) now, as a hash mismatch does in the background."""
        if not self._core.begin_refresh():
            return
        try:
            await self._refresh_state()
        finally:
            self._core.end_refresh()

    async def aclose(self) -> None:
        refresher = self._refresher
        if refresher is not None and not refresher.done():
            refresher.cancel()
            await asyncio.gather(refresher, return_exceptions=True)
        await self._http.aclose()
        cache = self._core.cache
        if cache is not None and self._owns_cache:
            await cache.aclose()

    async def __aenter__(self) -> AsyncClient:
        try:
            return await self.start()
        except BaseException:
            await self._http.aclose()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ I/O

    async def _fetch_meta(self) -> ModelMeta:
        answer = await self._send("meta_config_url", None)
        if answer.status_code != 200:
            raise error_from_response(answer.status_code, answer.content)
        return parse_meta(answer.content)

    async def _fetch_dictionary(self) -> Dictionary | None:
        answer = await self._send("meta_dictionary_url", None)
        if answer.status_code != 200:
            raise error_from_response(answer.status_code, answer.content)
        return parse_dictionary(answer.content)

    async def _send(self, url_attr: str, body: bytes | None) -> httpx.Response:
        """As ``Client._send``: transport errors go to the next host, an HTTP status never."""
        pool, attempts = self._pool, self.options.max_retries + 1
        last: httpx.TransportError | None = None
        deadline = 0.0
        for _ in range(attempts):
            while not isinstance(host := pool.pick_or_wait(self.model, last, deadline), Host):
                await asyncio.sleep(host)  # every host backs off: a retry waits for the first to end
            url = getattr(host, url_attr)
            try:
                if body is None:
                    answer = await self._http.get(url)
                else:
                    answer = await self._http.post(url, content=body, headers=_JSON)
            except httpx.TransportError as exc:
                pool.failed(host, exc)
                if last is None:  # retries may wait for a host up to one answer's timeout in all
                    deadline = pool.clock() + self.options.timeout_s
                last = exc
                continue
            except BaseException:
                pool.abandoned(host)
                raise
            pool.connected(host)
            return answer
        raise exhausted(self.model, attempts, last) from last

    async def _refresh_state(self) -> None:
        opts = self.options
        state = self._core.state
        assert state is not None
        meta = await self._fetch_meta() if opts.remote_config is None else state.meta
        self._core.replace_state(meta, await self._fetch_dictionary())

    def _refresh_soon(self) -> None:
        if not self._core.begin_refresh():
            return

        async def refresh() -> None:
            try:
                await self._refresh_state()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("model %s: dictionary refresh failed: %s", self.model, exc)
            finally:
                self._core.end_refresh()

        self._refresher = asyncio.get_running_loop().create_task(refresh(), name=f"mly-client-refresh-{self.model}")
