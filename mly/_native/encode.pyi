from typing import Any, Final

import numpy.typing as npt

DT_STRING: Final[int]
DT_INT64: Final[int]
DT_INT32: Final[int]
DT_FLOAT32: Final[int]
DT_FLOAT64: Final[int]
DT_BOOL: Final[int]

def json_type(v: object) -> str: ...
def describe(v: object) -> str: ...
def type_message(dtype: int, v: object) -> str: ...
def encode_column(
    name: str,
    dtype: int,
    values: object,
    n_rows: int,
    batch: bool,
    precision: int = 0,
) -> npt.NDArray[Any]: ...
