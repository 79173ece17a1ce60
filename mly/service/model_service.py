"""One served model: its current generation, health, and the eval pipeline.

The pipeline is a straight line (encode -> evaluate -> transform) and each
stage returns a value here; caching and batching slot in between encode and
evaluate without the HTTP layer knowing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from mly.batching import Batcher, settings_for
from mly.batching.deferred import DeferredRow
from mly.cache.tiered import TieredCache
from mly.common.request import EvalRequest, encode_columns, has_exact_names
from mly.config.schema import Config, ModelConfig
from mly.errors import (
    DeadlineExceededError,
    EvaluationError,
    MlyError,
    ModelLoadError,
    ModelNotReadyError,
)
from mly.logs.stream import StreamLog
from mly.metrics import ModelMetrics
from mly.model.loader import ModelChangedError, load_model
from mly.model.source import ModelSource
from mly.service.body_hits import BodyLookup
from mly.service.generation import Generation, build_generation
from mly.service.outcomes import RowOutcomes
from mly.service.singleflight import OwnRowNeeded
from mly.service.transform import Transformer, TransformInput, resolve_transformer

__all__ = ["EvalResult", "ModelService"]

log = logging.getLogger("mly.service")


@dataclass(frozen=True, slots=True)
class EvalResult:
    rows: Sequence[Any]
    batch: bool
    dict_hash: int
    cached_rows: int = 0
    """Rows answered from the cache (any tier); the rest were evaluated (or joined an evaluation)."""
    tiers: tuple[int, ...] = (0, 0, 0)
    """Of ``cached_rows``: how many the memory tier, L1 and L2 answered (the access log's ``tiers``)."""


class ModelService:
    def __init__(
        self,
        model: ModelConfig,
        config: Config,
        executor: Executor,
        *,
        cache: TieredCache | None = None,
        pool_threads: int | None = None,
    ) -> None:
        self.config = model
        self.cache = cache if model.use_dict else None
        self.app_config = config
        self.id = model.id
        self._executor = executor
        self._deadline_s = config.endpoint.deadline_ms / 1000
        self.batch_settings = settings_for(model, config, pool_threads=pool_threads)
        try:
            self.transformer: Transformer = resolve_transformer(model.transformer)
        except ValueError as exc:
            raise ModelLoadError(model.id, str(exc)) from exc
        self.source = ModelSource(model.url, model_id=model.id, location=model.location)
        self.stream_log: StreamLog | None = None
        if model.stream is not None:
            try:
                self.stream_log = StreamLog(model.stream, model_id=model.id)
            except OSError as exc:
                raise ModelLoadError(model.id, f"Stream.URL: cannot write {model.stream.url}: {exc}") from exc
            # Only a model with a stream log pays for timing and offering each answer.
            self.evaluate = self._evaluate_and_log  # type: ignore[method-assign]
        self._generation: Generation | None = None
        buckets = config.metrics.idletime_buckets_ns if config.metrics is not None else None
        self.metrics = ModelMetrics(model.id, buckets) if buckets else ModelMetrics(model.id)
        self.rows_evaluated = 0
        self.outcomes = RowOutcomes()
        """Where answered rows came from (memo, cache, model), for ``meta/stats``."""
        self.reloads = 0
        self.reload_failures = 0
        self.healthy = False
        self.error = ""
        self.reloaded_at = 0.0

    @property
    def caching(self) -> bool:
        return self.config.use_dict and bool(self.config.datastore)

    @property
    def current(self) -> Generation:
        generation = self._generation
        if generation is None:
            raise ModelNotReadyError(f"model {self.id!r} is not loaded: {self.error or 'loading'}")
        return generation

    @property
    def generation(self) -> Generation | None:
        return self._generation

    def _build(self) -> Generation:
        """Load a new generation (blocking: TensorFlow). Nothing is swapped here."""
        loaded = load_model(self.config, caching=self.caching, source=self.source)
        generation = build_generation(self.config, self.app_config, loaded)
        batcher = Batcher(loaded.runner.run, self._executor, self.batch_settings, name=self.id,  # type: ignore[attr-defined]
                          calls=self.metrics.eval)
        return dataclasses.replace(generation, batcher=batcher)

    def _install(self, generation: Generation) -> Generation | None:
        old, self._generation = self._generation, generation
        self.healthy = True
        self.error = ""
        self.reloaded_at = time.time()
        self.source.discard_except(generation.loaded.path)
        return old

    def load(self) -> Generation:
        """Load at start-up (blocking); a failure propagates so the server does not start."""
        try:
            generation = self._build()
        except MlyError as exc:
            self.healthy = False
            self.error = str(exc)
            raise
        self._install(generation)
        return generation

    async def reload_if_changed(self) -> bool:
        """One poll: reload when any model file changed. True when a new generation was swapped in.

        A failed reload keeps the old generation serving, sets health to 0 with
        the reason, and is tried again at the next poll; health returns to 1 when
        a good version loads (or the files return to the loaded version).
        """
        try:
            snapshot = await asyncio.to_thread(self.source.snapshot)
        except Exception as exc:
            self._reload_failed(f"cannot list the model's files: {exc}")
            return False
        current = self._generation
        if current is not None and snapshot == current.loaded.snapshot:
            if not self.healthy:
                log.info("model %s: files are back to the loaded version", self.id)
                self.healthy, self.error = True, ""
            return False
        started = time.perf_counter_ns()
        try:
            generation = await asyncio.to_thread(self._build)
        except MlyError as exc:
            if isinstance(exc.__cause__, ModelChangedError):
                log.info("model %s: files still changing, will retry", self.id)
                return False
            self.metrics.reload.record((time.perf_counter_ns() - started) // 1000, "error")
            self._reload_failed(str(exc))
            return False
        self.metrics.reload.record((time.perf_counter_ns() - started) // 1000)
        old = self._install(generation)
        self.reloads += 1
        if old is not None and old.dict_hash == generation.dict_hash and self.cache is not None:
            # Same vocabulary, new weights: the hash cannot tell the versions apart, so
            # this process serves no entry written before now, from any tier.
            self.cache.forget_older_entries()
        log.info("model %s: reloaded (dictHash %d)", self.id, generation.dict_hash)
        if old is not None:
            # Requests that already hold the old generation finish on it; none can
            # outlive its deadline, so it is retired after that.
            asyncio.get_running_loop().call_later(
                self._deadline_s + 1, lambda: asyncio.ensure_future(self._retire(old))
            )
        return True

    async def _retire(self, old: Generation) -> None:
        if old.batcher is not None:
            await old.batcher.close()
        del old
        if gc.get_freeze_count():
            # The server froze the heap after start-up (mly.server.freeze_heap); the
            # old model's cycles are frozen too, so release them with one full pass.
            gc.unfreeze()
            gc.collect()
            gc.freeze()

    def _reload_failed(self, reason: str) -> None:
        self.reload_failures += 1
        self.healthy = False
        self.error = reason
        log.error("model %s: reload failed, still serving the previous version: %s", self.id, reason)

    async def watch(self) -> None:
        """Poll every ``ReloadIntervalSec`` until cancelled."""
        interval = self.config.reload_interval_sec
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload_if_changed()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the watcher die; the next poll tries again
                log.exception("model %s: reload check failed", self.id)

    async def _evaluate_and_log(self, request: EvalRequest, lookup: BodyLookup | None = None) -> EvalResult:
        """``evaluate`` for a model with a ``Stream`` log: the answer is offered to it (never blocks)."""
        started = time.perf_counter_ns()
        result = await ModelService.evaluate(self, request, lookup)
        assert self.stream_log is not None
        self.stream_log.offer(request, result.rows, result.dict_hash, (time.perf_counter_ns() - started) // 1000)
        return result

    def close_logs(self, timeout_s: float = 5.0) -> None:
        """Write what the stream log still holds (bounded wait) and close it."""
        if self.stream_log is not None and not self.stream_log.close(timeout_s):
            log.warning("model %s: the stream log writer did not finish within %.0f s", self.id, timeout_s)

    async def evaluate(self, request: EvalRequest, lookup: BodyLookup | None = None) -> EvalResult:
        """encode -> keys -> cache -> single-flight -> evaluate the misses -> write back.

        ``lookup``: the keys and memory-tier values already read from the request's bytes
        (``body_hits.lookup_body``), used when they were built for the current generation."""
        deadline = asyncio.get_running_loop().time() + self._deadline_s
        generation = self.current
        cache = self.cache
        schema = generation.key_schema
        keys: list[str] | None = None
        found: list[bytes | None] = []
        tally = [0, 0, 0]  # rows each tier answered (memory, L1, L2), for the access log
        dtypes = generation.interface.dtypes
        exact = has_exact_names(request.values, dtypes)
        if cache is not None and schema is not None and exact:
            # Plain JSON values: key them straight from the parsed body; hits need no encoding.
            if lookup is not None and lookup.schema is schema and not lookup.all_hit:
                keys = lookup.keys
                if lookup.complete:  # every tier was asked already (a cache with no memory tier)
                    found = lookup.values  # type: ignore[assignment]
                    tally[:] = lookup.tiers
                else:
                    found = await cache.get_many(keys, generation.dict_hash, lookup.values, tally)
                if None not in found:
                    hits = [orjson.Fragment(value) for value in found]  # type: ignore[arg-type]
                    return EvalResult(hits, request.batch, generation.dict_hash, len(hits), tuple(tally))
            elif not request.batch:
                key = schema.key_if_plain(request.values)
                if key is not None:
                    keys = [key]
                    found = await cache.get_many(keys, generation.dict_hash, tally=tally)
                    hit = found[0]
                    if hit is not None:
                        return EvalResult([orjson.Fragment(hit)], False, generation.dict_hash, 1, tuple(tally))
            else:
                keys = schema.keys_if_plain(request.values, request.rows)
                if keys is not None:
                    found = await cache.get_many(keys, generation.dict_hash, tally=tally)
                    if None not in found:
                        hits = [orjson.Fragment(value) for value in found]  # type: ignore[arg-type]
                        return EvalResult(hits, True, generation.dict_hash, len(hits), tuple(tally))
        rows = request.rows
        # A single row with exactly the model's inputs (and, with a cache, a key from its plain
        # values) is encoded with the rest of its batch, in the inference thread (``DeferredRow``).
        builder = generation.row_builder
        columns: Mapping[str, np.ndarray]
        if (builder is not None and exact and not request.batch
                and (cache is None or schema is None or keys is not None)):
            columns = DeferredRow(request.values, builder)
        else:
            columns = encode_columns(request, dtypes, generation.encoders, names_checked=exact)
        if cache is None or schema is None:
            values = await self._evaluate(generation, columns, rows, deadline)
            return EvalResult(values, request.batch, generation.dict_hash)

        if keys is None:
            assert isinstance(columns, dict)  # encoded above: a deferred row always comes with its key
            keys = schema.keys(columns, rows)
            found = await cache.get_many(keys, generation.dict_hash, tally=tally)
        results: list[Any] = [None] * rows
        misses: list[int] = []
        for i, value in enumerate(found):
            if value is None:
                misses.append(i)
            else:
                results[i] = orjson.Fragment(value)
        if misses:
            await self._fill_misses(generation, cache, columns, keys, misses, results, deadline)
            for i in misses:
                results[i] = orjson.Fragment(results[i])
        return EvalResult(results, request.batch, generation.dict_hash, rows - len(misses), tuple(tally))

    async def _fill_misses(
        self,
        generation: Generation,
        cache: TieredCache,
        columns: Mapping[str, np.ndarray],
        keys: list[str],
        misses: list[int],
        results: list[Any],
        deadline: float,
        at: Mapping[int, int] | None = None,
    ) -> None:
        """Evaluate (or wait for) the rows ``misses`` and put each one's JSON (bytes) in ``results``.

        ``at``: where row ``i`` is in ``columns`` when they hold only some rows (``body_rows``);
        ``None`` when they hold every row."""
        flight = generation.flight
        claim = flight.claim(keys if len(misses) == len(keys) else [keys[i] for i in misses], misses)
        if claim.owned:
            owned = claim.owned if at is None else [at[i] for i in claim.owned]
            if len(owned) == (len(keys) if at is None else len(at)):
                subset = columns  # every row is this caller's to evaluate, in order
            else:
                index = np.asarray(owned, dtype=np.intp)
                subset = {name: column[index] for name, column in columns.items()}
            try:
                computed = await self._evaluate(generation, subset, len(claim.owned), deadline)
                encoded = [orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) for row in computed]
            except BaseException:
                # The owner's failure is its own (a refused value, a batch-mate's error, its
                # deadline, its client gone): each waiter evaluates its own row instead.
                flight.fail(claim.keys, OwnRowNeeded())
                raise
            flight.resolve(claim.keys, encoded)
            self._store(generation, cache, claim.keys, computed, encoded)
            for i, row_json in zip(claim.owned, encoded):
                results[i] = row_json
        for i, future in claim.waiting.items():
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                results[i] = await asyncio.wait_for(asyncio.shield(future), max(remaining, 0))
            except TimeoutError:
                raise self._deadline_error() from None
            except OwnRowNeeded:
                j = i if at is None else at[i]
                own = columns if type(columns) is DeferredRow else {n: c[j : j + 1] for n, c in columns.items()}
                computed = await self._evaluate(generation, own, 1, deadline)
                encoded = [orjson.dumps(computed[0], option=orjson.OPT_SERIALIZE_NUMPY)]
                self._store(generation, cache, [keys[i]], computed, encoded)
                results[i] = encoded[0]

    def _store(self, generation: Generation, cache: TieredCache, keys: Sequence[str], computed: Sequence[Any],
               encoded: Sequence[bytes]) -> None:
        # Entries carry the hash of the dictionary they were computed under, but a
        # reload may keep the hash (new weights, same vocabulary): rows of a version
        # that is no longer serving are answered, never stored.
        if generation is not self._generation:
            return
        cache.put_many(list(zip(keys, computed, encoded)), generation.dict_hash)

    async def _evaluate(
        self, generation: Generation, columns: Mapping[str, np.ndarray], rows: int, deadline: float
    ) -> Sequence[Any]:
        """TensorFlow through the batcher (which honours the deadline), then the transformer.

        ``columns`` is every input's column, or a ``DeferredRow`` that the batch builds (it
        then also stands for the inputs the transformer may read)."""
        interface = generation.interface
        feeds = columns if type(columns) is DeferredRow else {name: columns[name] for name in interface.fed}
        assert generation.batcher is not None
        self.rows_evaluated += rows
        try:
            outputs = await generation.batcher.submit(feeds, rows, deadline)
        except MlyError:
            raise
        except Exception as exc:
            log.exception("model %s: evaluation failed", self.id)
            raise EvaluationError(f"model {self.id!r}: evaluation failed: {exc}") from exc
        return self._transform(interface, columns, outputs, rows)

    def _deadline_error(self) -> EvaluationError:
        return DeadlineExceededError(
            f"model {self.id!r}: evaluation did not finish within {self._deadline_s * 1000:.0f} ms"
        )

    def _transform(
        self, interface: Any, columns: Mapping[str, np.ndarray], outputs: Any, rows: int
    ) -> Sequence[Any]:
        data = TransformInput(self.id, rows, columns, outputs, [o.name for o in interface.outputs])
        try:
            result = self.transformer(data)
        except Exception as exc:
            log.exception("model %s: transformer failed", self.id)
            raise EvaluationError(f"model {self.id!r}: transformer failed: {exc}") from exc
        if len(result) != rows:
            raise EvaluationError(
                f"model {self.id!r}: transformer returned {len(result)} rows for {rows} inputs"
            )
        return result
