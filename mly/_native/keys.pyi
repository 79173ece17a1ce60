from collections.abc import Sequence
from typing import Any, Final, TypeAlias, TypeVar, final

import numpy as np
import numpy.typing as npt

SLOT_NONE: Final[int]
SLOT_STRING_VOCAB: Final[int]
SLOT_INT_VOCAB: Final[int]
SLOT_WILDCARD: Final[int]
SLOT_FLOAT: Final[int]
OOV_STRING: Final[str]

_Vocabulary: TypeAlias = Sequence[str] | Sequence[int] | None
_Slot: TypeAlias = tuple[int, _Vocabulary, int] | tuple[int, _Vocabulary, int, bool]
_F = TypeVar("_F", np.float32, np.float64)

@final
class KeyBuilder:
    def __init__(self, slots: Sequence[_Slot]) -> None: ...
    @property
    def n_slots(self) -> int: ...
    def build(self, columns: Sequence[npt.NDArray[Any] | None], n_rows: int) -> list[str]: ...
    def build_plain(self, columns: Sequence[object], n_rows: int, dtypes: Sequence[int]) -> list[str] | None: ...
    def build_body(
        self, body: bytes | bytearray, names: tuple[bytes, ...], codes: Sequence[int], max_rows: int
    ) -> tuple[list[str], bool] | None: ...
    def body_rows(
        self, body: bytes | bytearray, names: tuple[bytes, ...], codes: Sequence[int], scales: tuple[float, ...],
        rows: list[int], max_rows: int,
    ) -> list[npt.NDArray[Any]] | None: ...
    def build_row(self, values: Sequence[object]) -> str: ...

def round_precision(values: npt.NDArray[_F], precision: int, narrow: bool) -> npt.NDArray[_F]: ...
