"""The server's garbage-collector settings (``mly.server.freeze_heap``)."""

from __future__ import annotations

import gc

from mly.server import YOUNG_GC_THRESHOLD, freeze_heap


def test_freeze_heap_hides_the_loaded_heap_and_collects_the_young_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])
        freeze_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
