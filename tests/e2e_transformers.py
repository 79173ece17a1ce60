"""A custom transformer for the end-to-end tests (Go's ``slft`` example)."""

from __future__ import annotations

from typing import Any

from mly.service.transform import TransformInput, register_transformer


@register_transformer("e2e-score-class")
def score_class(data: TransformInput) -> list[dict[str, Any]]:
    """Maps the score to a class with Go's thresholds (< 1, < 2, < 5) and echoes the key field ``kf``."""
    scores = data.outputs["score"].reshape(data.rows)
    notes = data.inputs["kf"]
    out = []
    for score, note in zip(scores.tolist(), notes.tolist()):
        label = "one" if score < 1 else "two" if score < 2 else "five" if score < 5 else "other"
        out.append({"Class": label, "kf": note})
    return out
