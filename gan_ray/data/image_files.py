"""Where a folder dataset's files live: a local directory, a ``.zip`` file, or a prefix on a remote
filesystem (``s3://bucket/prefix``, through pyarrow). Lists them (path, size, mtime) and reads their bytes.

Every failure to reach the source is a :class:`~gan_ray.errors.DatasetNotFoundError` in one line.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from gan_ray.errors import DatasetNotFoundError


@dataclass(frozen=True)
class FileEntry:
    """One file of the source: its path relative to the root (``/``-separated), size and mtime (ns)."""

    path: str
    size: int
    mtime_ns: int


class ImageFiles(Protocol):
    root: str

    def listing(self) -> list[FileEntry]: ...

    def read(self, path: str) -> bytes: ...


def _hidden(parts: tuple[str, ...]) -> bool:
    # Dot files (.DS_Store, ._x.png from macOS) and macOS zip metadata are never data.
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


class LocalFolder:
    """A directory on this machine, walked recursively (hidden files and folders left out)."""

    def __init__(self, root: str):
        self.root = root
        self.path = Path(root).expanduser()
        if not self.path.is_dir():
            raise DatasetNotFoundError(
                f"data.root {root!r}: no such folder (expected a folder, a .zip or s3://...)"
            )

    def listing(self) -> list[FileEntry]:
        out = []
        for folder, dirs, files in os.walk(self.path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                full = Path(folder) / name
                rel = full.relative_to(self.path).as_posix()
                if _hidden(PurePosixPath(rel).parts):
                    continue
                st = full.stat()
                out.append(FileEntry(rel, st.st_size, st.st_mtime_ns))
        return sorted(out, key=lambda e: e.path)

    def read(self, path: str) -> bytes:
        return (self.path / path).read_bytes()


class ZipFolder:
    """A ``.zip`` file; a single folder wrapping everything in it (``photos/cats/x.png``) is looked through."""

    def __init__(self, root: str):
        self.root = root
        path = Path(root).expanduser()
        if not path.is_file():
            raise DatasetNotFoundError(f"data.root {root!r}: no such file")
        if not zipfile.is_zipfile(path):
            raise DatasetNotFoundError(f"data.root {root!r}: not a zip file (its name ends in .zip)")
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise DatasetNotFoundError(f"data.root {root!r}: not a readable zip file ({err})") from None
        names = [
            i for i in self.zip.infolist() if not i.is_dir() and not _hidden(PurePosixPath(i.filename).parts)
        ]
        self.prefix = _common_folder([i.filename for i in names])
        self.infos = {i.filename[len(self.prefix) :]: i for i in names}

    def listing(self) -> list[FileEntry]:
        out = []
        for rel, info in self.infos.items():
            y, mo, d, h, mi, s = info.date_time
            stamp = ((((y * 100 + mo) * 100 + d) * 100 + h) * 100 + mi) * 100 + s
            # The CRC goes into the "mtime": a member rewritten within the zip's 2-second clock still differs.
            out.append(FileEntry(rel, info.file_size, (stamp << 32) + info.CRC))
        return sorted(out, key=lambda e: e.path)

    def read(self, path: str) -> bytes:
        try:
            return self.zip.read(self.infos[path])
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as err:
            # A member whose bytes are damaged: the decoder counts it as a corrupt file.
            raise ValueError(f"unreadable zip member ({type(err).__name__})") from None

    def __getstate__(self):  # zip handles do not pickle; reopen on the other side
        return {"root": self.root}

    def __setstate__(self, state):
        self.__init__(state["root"])


def _common_folder(names: list[str]) -> str:
    """``top/`` when every name lies under one folder ``top`` with more folders or files below it."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop() + "/"
    return ""


class RemoteFolder:
    """A prefix on a pyarrow filesystem (``s3://bucket/prefix``, ``gs://...``), listed recursively."""

    def __init__(self, root: str):
        import pyarrow.fs

        self.root = root
        try:
            self.fs, self.base = pyarrow.fs.FileSystem.from_uri(root)
            info = self.fs.get_file_info(self.base)
        except (
            Exception
        ) as err:  # pyarrow raises OSError, ValueError, ArrowInvalid...: all mean "cannot reach"
            raise DatasetNotFoundError(f"data.root {root!r}: cannot reach it ({_first_line(err)})") from None
        if info.type == pyarrow.fs.FileType.NotFound:
            raise DatasetNotFoundError(f"data.root {root!r}: nothing at this prefix")

    def listing(self) -> list[FileEntry]:
        import pyarrow.fs

        try:
            infos = self.fs.get_file_info(pyarrow.fs.FileSelector(self.base, recursive=True))
        except Exception as err:
            raise DatasetNotFoundError(
                f"data.root {self.root!r}: cannot list it ({_first_line(err)})"
            ) from None
        out = []
        for info in infos:
            if info.type != pyarrow.fs.FileType.File:
                continue
            rel = info.path[len(self.base) :].lstrip("/")
            if not _hidden(PurePosixPath(rel).parts):
                out.append(FileEntry(rel, info.size or 0, info.mtime_ns or 0))
        return sorted(out, key=lambda e: e.path)

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(self.base.rstrip("/") + "/" + path) as f:
            return f.read()

    def __getstate__(self):
        return {"root": self.root}

    def __setstate__(self, state):
        self.__init__(state["root"])


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def open_files(root: str) -> ImageFiles:
    """The source at ``root``: a remote URI, a ``.zip`` file, or a local folder."""
    if "://" in root:
        return RemoteFolder(root)
    if root.lower().endswith(".zip") or Path(root).expanduser().is_file():
        return ZipFolder(root)
    return LocalFolder(root)
