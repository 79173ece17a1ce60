from array import array
from typing import Final

PARTITIONS: Final[int]
NO_OWNER: Final[int]
NEVER_EXPIRES_MS: Final[int]
STALE: Final[int]
RESULT_OK: Final[int]
RESULT_NOT_FOUND: Final[int]

def digest(set_name: bytes, key: str | bytes) -> bytes: ...
def partition_id(digest: bytes) -> int: ...
def route(
    namespace: bytes, set_name: bytes, keys: list[str], owners: memoryview | array[int], timeout_ms: int,
    only: list[int] | None = None, digests_of: dict[str, bytes] | None = None, remember: int = 0,
) -> list[tuple[int, bytes, list[int]]]: ...
def reply_end(data: bytes | bytearray | memoryview) -> int: ...
def decode_reply(
    reply: bytes, rows: list[bytes | None], remaining: list[int], fallback: list[int], dict_hash: int,
    now_ms: int, min_expires_ms: int,
) -> tuple[int, int]: ...
def json_double(v: float) -> bytes: ...
