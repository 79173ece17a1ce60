"""One served model: its current generation, health, and the eval pipeline.

The pipeline is a straight line (encode -> evaluate -> transform) and each
stage returns a value here; caching and batching slot in between encode and
evaluate without the HTTP layer knowing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mly.config.schema import Config, ModelConfig
from mly.errors import EvaluationError, MlyError, ModelLoadError, ModelNotReadyError
from mly.model.loader import load_model
from mly.service.generation import Generation, build_generation
from mly.service.request import EvalRequest, encode_request
from mly.service.transform import TransformInput, Transformer, resolve_transformer

__all__ = ["EvalResult", "ModelService"]

log = logging.getLogger("mly.service")


@dataclass(frozen=True, slots=True)
class EvalResult:
    rows: Sequence[Any]
    batch: bool
    dict_hash: int


class ModelService:
    def __init__(self, model: ModelConfig, config: Config, executor: Executor) -> None:
        self.config = model
        self.app_config = config
        self.id = model.id
        self._executor = executor
        self._deadline_s = config.endpoint.deadline_ms / 1000
        try:
            self.transformer: Transformer = resolve_transformer(model.transformer)
        except ValueError as exc:
            raise ModelLoadError(model.id, str(exc)) from exc
        self._generation: Generation | None = None
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

    def load(self) -> Generation:
        """Load (blocking) and swap in a new generation; on failure keep the old one."""
        try:
            loaded = load_model(self.config, caching=self.caching)
            generation = build_generation(self.config, self.app_config, loaded)
        except MlyError as exc:
            self.healthy = False
            self.error = str(exc)
            raise
        self._generation = generation
        self.healthy = True
        self.error = ""
        self.reloaded_at = time.time()
        return generation

    async def evaluate(self, request: EvalRequest) -> EvalResult:
        generation = self.current
        columns = encode_request(request, generation)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._compute, generation, columns, request.rows)
        try:
            rows = await asyncio.wait_for(future, self._deadline_s)
        except TimeoutError:
            raise EvaluationError(
                f"model {self.id!r}: evaluation did not finish within {self._deadline_s * 1000:.0f} ms"
            ) from None
        return EvalResult(rows, request.batch, generation.dict_hash)

    def _compute(self, generation: Generation, columns: dict[str, np.ndarray], rows: int) -> Sequence[Any]:
        """Runs in the inference pool: one TensorFlow call, then the transformer."""
        interface = generation.interface
        feeds = {name: columns[name] for name in interface.fed}
        try:
            outputs = generation.loaded.runner.run(feeds)  # type: ignore[attr-defined]
        except Exception as exc:
            log.exception("model %s: evaluation failed", self.id)
            raise EvaluationError(f"model {self.id!r}: evaluation failed: {exc}") from exc
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
