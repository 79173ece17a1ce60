"""Where a model's files come from, and whether they changed.

A local folder (path or ``file://``) is loaded in place; any other URL
(``s3://``, ``gs://``, anything fsspec reads) is first copied into a local
folder named after the files' versions, inside a folder of this source's own
under ``Location``: worker processes, or two servers on one host, copying the
same model never rename onto or delete each other's copies. A change is *any* difference in the
set of files, their sizes or versions (mtime, ETag): Go only compares the
oldest and newest mtime and ignores models whose files span more than an hour
(docs/differences-from-go.md #10).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["FileSnapshot", "ModelSource"]


@dataclass(frozen=True, slots=True)
class FileSnapshot:
    files: tuple[tuple[str, int, str], ...]
    """``(relative path, size, version)`` sorted by path; the version is an mtime or an ETag."""
    mtimes: tuple[float, ...] = ()

    @property
    def min_mtime(self) -> float:
        return min(self.mtimes, default=0.0)

    @property
    def max_mtime(self) -> float:
        return max(self.mtimes, default=0.0)

    @property
    def file_hash(self) -> int:
        """Go's fsHash: oldest + newest mtime in whole seconds (used when there are no layers)."""
        return int(self.min_mtime) + int(self.max_mtime)

    @property
    def digest(self) -> str:
        text = "\n".join(f"{p}\t{s}\t{v}" for p, s, v in self.files)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _epoch(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


class ModelSource:
    """The files behind one model URL."""

    def __init__(self, url: str, *, model_id: str, location: str = "") -> None:
        self.url = url
        self.model_id = model_id
        if url.startswith("file://"):
            self.local_path: str | None = url[len("file://") :]
        elif "://" in url:
            self.local_path = None
        else:
            self.local_path = url
        self.location = location or os.path.join(tempfile.gettempdir(), "mly", model_id)
        self._own: str | None = None

    @property
    def is_local(self) -> bool:
        return self.local_path is not None

    def snapshot(self) -> FileSnapshot:
        """List the files; ``FileNotFoundError`` if there is nothing at the URL."""
        if self.local_path is not None:
            return self._local_snapshot(self.local_path)
        fs, root = self._remote()
        fs.invalidate_cache(root)  # object-store filesystems cache listings; a poll must see changes
        listing = fs.find(root, detail=True)
        if not listing:
            raise FileNotFoundError(f"no model files at {self.url}")
        files = []
        mtimes = []
        for name, info in sorted(listing.items()):
            if info.get("type") == "directory":
                continue
            rel = name[len(root.rstrip("/")) :].lstrip("/")
            stamp = info.get("mtime") or info.get("LastModified") or info.get("updated") or 0
            version = info.get("ETag") or info.get("etag") or info.get("md5Hash") or str(stamp)
            files.append((rel, int(info.get("size") or 0), str(version)))
            mtimes.append(_epoch(stamp))
        return FileSnapshot(tuple(files), tuple(mtimes))

    @staticmethod
    def _local_snapshot(path: str) -> FileSnapshot:
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"model folder {path} does not exist")
        files = []
        mtimes = []
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                full = Path(dirpath) / name
                st = full.stat()
                files.append((str(full.relative_to(root)), st.st_size, str(st.st_mtime_ns)))
                mtimes.append(st.st_mtime)
        order = sorted(range(len(files)), key=files.__getitem__)
        return FileSnapshot(tuple(files[i] for i in order), tuple(mtimes[i] for i in order))

    def _remote(self) -> tuple[Any, str]:
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - depends on extras
            raise ValueError(f"{self.url}: reading object stores needs fsspec (pip install 'mly[s3]' or 'mly[gcs]')") from exc
        try:
            fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise ValueError(f"{self.url}: {exc}") from exc
        return fs, root

    def _own_folder(self) -> str:
        """This source's folder under ``location`` (made on first use; ``close`` removes it).

        Named after the process id so an operator can tell whose copies they are.
        """
        if self._own is None:
            os.makedirs(self.location, exist_ok=True)
            self._own = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=self.location)
        return self._own

    def materialize(self, snapshot: FileSnapshot) -> str:
        """A local folder holding exactly ``snapshot``'s files (the folder itself when local)."""
        if self.local_path is not None:
            return self.local_path
        own = self._own_folder()
        target = os.path.join(own, snapshot.digest)
        if os.path.isdir(target):
            return target
        fs, root = self._remote()
        partial = tempfile.mkdtemp(prefix=".partial-", dir=own)
        try:
            for rel, _, _ in snapshot.files:
                dest = os.path.join(partial, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                fs.get_file(f"{root.rstrip('/')}/{rel}", dest)
            os.replace(partial, target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return target

    def discard_except(self, keep: str) -> None:
        """Remove this source's copies of other versions (remote URLs only)."""
        if self.local_path is not None or self._own is None or not os.path.isdir(self._own):
            return
        for name in os.listdir(self._own):
            path = os.path.join(self._own, name)
            if path != keep and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        """Remove every copy this source made (at exit: the models are in memory by then)."""
        own, self._own = self._own, None
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)
