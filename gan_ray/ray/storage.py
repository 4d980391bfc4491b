"""Files on the storage every node of a Ray cluster reaches (a local or shared folder, or S3 and the like),
read and written through pyarrow's filesystems, as Ray Train itself does."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _join(storage_path: str, relative: str) -> str:
    return storage_path.rstrip("/") + "/" + relative.lstrip("/")


def exists(uri: str) -> bool:
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(uri if "://" in uri else str(Path(uri).absolute()))
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def put_file(local: Path, storage_path: str, relative: str, *, keep_existing: bool = False) -> str:
    """Copy ``local`` to ``storage_path/relative`` and return where it went (a path or a URI).

    With ``keep_existing`` a file already there is left as it is (and its location returned).
    """
    import pyarrow.fs

    target = _join(storage_path, relative)
    if "://" not in target:
        target = str(Path(target).absolute())
    if keep_existing and exists(target):
        return target
    fs, path = pyarrow.fs.FileSystem.from_uri(target)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pyarrow.fs.copy_files(str(Path(local).absolute()), target)
    return target


def get_file(uri: str, local: Path) -> Path:
    """Copy the file at ``uri`` (a path, or s3:// and the like) to ``local``."""
    import pyarrow.fs

    source = uri if "://" in uri else str(Path(uri).absolute())
    Path(local).parent.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(source, str(Path(local).absolute()))
    return Path(local)


@contextlib.contextmanager
def local_file(uri: str | None) -> Iterator[Path | None]:
    """``uri`` as a local file for as long as needed: a local path as it is, a remote one downloaded."""
    if uri is None or "://" not in uri:
        yield None if uri is None else Path(uri)
        return
    import pyarrow.fs

    with tempfile.TemporaryDirectory(prefix="gan_ray_") as tmp:
        local = Path(tmp) / uri.rstrip("/").rsplit("/", 1)[-1]
        pyarrow.fs.copy_files(uri, str(local))
        yield local
