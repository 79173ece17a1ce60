"""``Client``: the blocking driver of ``ClientCore`` (httpx.Client).

The local tier is read on the caller's thread. Redis and Aerospike tiers are
the server's async stores, run on the process's private event loop thread
(``_loop.background_loop``).

A ``Client`` inherited by a forked child (a pre-fork server's workers) notices
the new process on its first call that needs the network: the parent's loop
thread does not exist there, and its HTTP and store connections belong to the
parent, so the child gets its own (``Client._after_fork``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

from mly.cache.tiered import TieredCache
from mly.client._core import ClientCore, parse_dictionary, parse_meta
from mly.client._loop import BackgroundLoop, background_loop, run_inline
from mly.client._stores import build_cache, start_cache
from mly.client.errors import error_from_response
from mly.client.hosts import Host, HostPool, exhausted
from mly.client.message import Message
from mly.client.options import ClientOptions
from mly.client.response import Response
from mly.common.dictionary import Dictionary
from mly.common.meta import ModelMeta

__all__ = ["Client"]

log = logging.getLogger("mly.client")

_JSON = {"Content-Type": "application/json"}


_FORK_LOCK = threading.Lock()


def _new_lock_in_child() -> None:
    """A lock some parent thread held at the fork would stay held in the child for ever."""
    global _FORK_LOCK
    _FORK_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


class Client:
    """A model's client: predictions answered from the cache tiers when possible.

    ``Client("ctr", hosts=["127.0.0.1:8080"])`` fetches the model's
    ``meta/config`` and ``meta/dictionary`` (unless given in the options) and
    builds its cache tiers. Keyword arguments are ``ClientOptions`` fields.
    Thread-safe; close it (or use ``with``) to release connections.
    """

    def __init__(self, model: str, hosts: Sequence[str] | str, *, options: ClientOptions | None = None,
                 **overrides: Any) -> None:
        self.options = opts = ClientOptions.of(options, overrides)
        self._core = ClientCore(model, opts)
        self._pool = HostPool(hosts, model, backoff_s=opts.host_backoff_s, backoff_cap_s=opts.host_backoff_cap_s)
        self._http = self._new_http()
        self._pid = os.getpid()
        self._loop: BackgroundLoop | None = None
        self._owns_cache = opts.datastore is None
        self._refresher: threading.Thread | None = None
        try:
            self._start()
        except BaseException:
            self._http.close()
            raise

    # ------------------------------------------------------------------ API

    @property
    def model(self) -> str:
        return self._core.model

    @property
    def dict_hash(self) -> int:
        """The hash of the dictionary keys are built with now."""
        return self._core.state.dict_hash  # type: ignore[union-attr]

    @property
    def cache(self) -> TieredCache | None:
        """The client's cache tiers (None: the model's answers are not cached)."""
        return self._core.cache

    def new_message(self) -> Message:
        return Message()

    def predict(self, inputs: Any, *, into: type | None = None) -> Response:
        """One row (a dict) or rows (a list of dicts); ``into`` types each result row."""
        core = self._core
        hit = core.fast(inputs, into)
        if hit is not None:
            return hit
        plan = core.plan(core.request_of(inputs))
        if plan.keys is not None and core.cache is not None:
            core.absorb(plan, self._lookup(core.cache, plan.keys, plan.state.dict_hash))
            if not plan.misses:
                return core.cached(plan, into)
        answer = self._send("eval_url", core.body(plan))
        response, stale = core.finish(plan, answer.status_code, answer.content, into)
        if stale:
            self._refresh_soon()
        return response

    def run(self, message: Message, *, into: type | None = None) -> Response:
        """Predict a ``Message`` (the Go client's ``Run``)."""
        if not isinstance(message, Message):
            raise TypeError(f"run: expected a Message, got {type(message).__name__}")
        return self.predict(message.request(), into=into)

    def refresh(self) -> None:
        """Fetch the dictionary (and config) now, as a hash mismatch does in the background."""
        if not self._core.begin_refresh():
            return
        try:
            self._refresh_state()
        finally:
            self._core.end_refresh()

    def close(self) -> None:
        if self._pid != os.getpid():  # what the child has of the parent's is the parent's to close
            self._forget_parent()
        refresher = self._refresher
        if refresher is not None:
            refresher.join(timeout=self.options.timeout_s * 2)
        self._http.close()
        cache = self._core.cache
        if cache is not None and self._owns_cache and self._loop is not None:
            try:
                self._loop.run(cache.aclose(), timeout_s=10)
            except Exception as exc:  # closing must not raise over the caller's own error
                log.warning("closing the cache of model %s: %s", self.model, exc)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ I/O

    def _new_http(self) -> httpx.Client:
        opts = self.options
        return httpx.Client(timeout=httpx.Timeout(opts.timeout_s, connect=opts.connect_timeout_s), trust_env=False)

    def _after_fork(self) -> None:
        """First network use in a forked child: new HTTP connections, loop and store tiers.

        A cache the client did not build (``datastore``) or whose stores are shared
        (``shared_stores``) cannot be rebuilt here: that is an error naming the fix.
        """
        with _FORK_LOCK:
            if self._pid == os.getpid():
                return
            cache = self._core.cache
            external = cache is not None and (cache.l1 is not None or cache.l2 is not None)
            opts = self.options
            if external and (not self._owns_cache or opts.shared_stores is not None):
                given = "datastore" if not self._owns_cache else "shared_stores"
                raise RuntimeError(
                    f"model {self.model!r}: this Client was created in process {self._pid} and used in the forked "
                    f"process {os.getpid()}; its cache stores ({given} option) belong to the parent. "
                    "Create the client (and its stores) in the child, after the fork")
            self._forget_parent()
            if external:
                state = self._core.state
                assert state is not None
                self._core.install(state.meta, state.dictionary, build_cache(state.meta, opts))
                rebuilt = self._core.cache
                if rebuilt is not None:
                    self._loop = background_loop()
                    self._loop.run(start_cache(rebuilt), timeout_s=10)
            self._pid = os.getpid()

    def _forget_parent(self) -> None:
        """Drop (never close) the parent's connections: closing them here would close them for it."""
        self._http = self._new_http()
        self._refresher = None
        self._loop = None
        self._core.forked()
        cache = self._core.cache
        if cache is not None and (cache.l1 is not None or cache.l2 is not None) and self._owns_cache:
            self._core.cache = None  # its stores run on the parent's loop; nothing to close here

    def _start(self) -> None:
        opts = self.options
        meta = parse_meta(opts.remote_config) if opts.remote_config is not None else self._fetch_meta()
        dictionary = parse_dictionary(opts.dictionary) if opts.dictionary is not None else self._fetch_dictionary()
        cache = opts.datastore if opts.datastore is not None else build_cache(meta, opts)
        self._core.install(meta, dictionary, cache)
        cache = self._core.cache
        if cache is not None and (cache.l1 is not None or cache.l2 is not None):
            self._loop = background_loop()
            self._loop.run(start_cache(cache), timeout_s=10)

    def _fetch_meta(self) -> ModelMeta:
        answer = self._send("meta_config_url", None)
        if answer.status_code != 200:
            raise error_from_response(answer.status_code, answer.content)
        return parse_meta(answer.content)

    def _fetch_dictionary(self) -> Dictionary | None:
        answer = self._send("meta_dictionary_url", None)
        if answer.status_code != 200:
            raise error_from_response(answer.status_code, answer.content)
        return parse_dictionary(answer.content)

    def _lookup(self, cache: TieredCache, keys: list[str], dict_hash: int) -> list[bytes | None]:
        if cache.l1 is None and cache.l2 is None:
            return run_inline(cache.get_many(keys, dict_hash))
        if self._pid != os.getpid():
            self._after_fork()
            cache = self._core.cache  # type: ignore[assignment]
        assert self._loop is not None
        tiers = (cache.l1 is not None) + (cache.l2 is not None)
        try:
            # The cache bounds each tier by its own timeout; this only guards the hand-off.
            return self._loop.run(cache.get_many(keys, dict_hash), timeout_s=tiers * cache.timeout_s + 1.0)
        except concurrent.futures.TimeoutError:
            return [None] * len(keys)

    def _send(self, url_attr: str, body: bytes | None) -> httpx.Response:
        """One request with failover: transport errors are retried on the next host, an
        HTTP status never is (the caller turns it into an error)."""
        if self._pid != os.getpid():
            self._after_fork()
        pool, attempts = self._pool, self.options.max_retries + 1
        last: httpx.TransportError | None = None
        deadline = 0.0
        for _ in range(attempts):
            while not isinstance(host := pool.pick_or_wait(self.model, last, deadline), Host):
                time.sleep(host)  # every host backs off: a retry waits for the first to end
            url = getattr(host, url_attr)
            try:
                answer = self._http.get(url) if body is None else self._http.post(url, content=body, headers=_JSON)
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

    def _refresh_state(self) -> None:
        opts = self.options
        meta = self._fetch_meta() if opts.remote_config is None else self._core.state.meta  # type: ignore[union-attr]
        self._core.replace_state(meta, self._fetch_dictionary())

    def _refresh_soon(self) -> None:
        if not self._core.begin_refresh():
            return

        def refresh() -> None:
            try:
                self._refresh_state()
            except Exception as exc:
                log.warning("model %s: dictionary refresh failed: %s", self.model, exc)
            finally:
                self._core.end_refresh()

        self._refresher = threading.Thread(target=refresh, name=f"mly-client-refresh-{self.model}", daemon=True)
        self._refresher.start()
