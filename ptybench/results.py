"""The results store: one JSON line per measurement, appended atomically, loaded into pandas.

A record is written with a single ``write`` of the whole line on a file opened for appending, then
flushed and fsync'ed, so a killed process leaves either the whole line or, at worst, a partial last
line without its newline; readers skip such a tail (and say so) and the next append starts a fresh line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ptybench.engines.errors import InputError, InputTypeError
from ptybench.record import SCHEMA_VERSION, STATUSES

#: Fields that identify a measurement: a sweep skips a configuration whose key is already stored.
KEY_FIELDS = ("dataset", "dataset_changes", "engine", "backend", "device", "ranks", "threads", "frames_per_block",
              "iterations", "warmup", "parameters", "repeat", "launcher", "host_memory_bytes")
#: Key fields that enter the hash only when set, so records written before they existed keep their keys.
_KEY_FIELDS_WHEN_SET = ("repeat", "launcher", "host_memory_bytes")


def measurement_key(record: Mapping[str, Any]) -> str:
    """A short stable hash of the fields that say *what* was measured (not how it came out). The first
    run of a configuration (repeat 0) and a point without a special launcher keep the keys they had before those
    fields existed."""
    identity = {name: record.get(name) for name in KEY_FIELDS
                if name not in _KEY_FIELDS_WHEN_SET or record.get(name)}
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def append(path: str | os.PathLike, record: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``record`` (with schema version and key) as one line; durable when this returns."""
    if record.get("status") not in STATUSES:
        raise InputError(f"record['status']: expected one of {list(STATUSES)}, got {record.get('status')!r}")
    full = _finite({"schema": SCHEMA_VERSION, **record})
    full["key"] = measurement_key(full)
    line = json.dumps(full, sort_keys=True, allow_nan=False, default=_jsonable) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # unbuffered: nothing flushed late
        try:
            start = os.lseek(descriptor, 0, os.SEEK_END)
            if start > 0 and not _ends_with_newline(path):
                line = "\n" + line  # a previous writer died mid-line: never glue onto its fragment
            try:
                data = memoryview(line.encode())
                while data:
                    data = data[os.write(descriptor, data):]
                os.fsync(descriptor)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(descriptor, start)  # no torn line left behind
                raise
        finally:
            os.close(descriptor)
    except OSError as error:
        kept = spill(path, line)
        raise OSError(error.errno, f"results file {path}: the record could not be appended "
                                   f"({error.strerror or error}); it is kept in {kept}") from error
    return full


def spill(path: Path, line: str) -> str:
    """Keep a record that could not be appended: beside the results file, else in the temporary folder, else
    on stderr. Returns where it went (for the error message)."""
    for folder in (path.parent, Path(tempfile.gettempdir())):
        target = folder / f"{path.name}.unsaved.jsonl"
        try:
            with open(target, "a", encoding="utf-8") as stream:
                stream.write(line.lstrip("\n"))
                stream.flush()
                os.fsync(stream.fileno())
            return str(target)
        except OSError:
            continue
    sys.stderr.write(line.lstrip("\n"))
    return "stderr (no folder was writable)"


#: A point is not started with less free space than this beside its results file: it would be measured
#: (minutes, at real sizes) and then lost at the append.
FREE_SPACE_BYTES = 4 * 2**20


def require_free_space(path: str | os.PathLike) -> None:
    folder = Path(path).parent
    free = shutil.disk_usage(folder if folder.exists() else Path.cwd()).free
    if free < FREE_SPACE_BYTES:
        raise OSError(errno.ENOSPC, f"results file {path}: only {free} bytes free in {folder}; a measured point "
                                    f"could not be stored (free some space, or give --out elsewhere)")


def require_writable(path: str | os.PathLike) -> Path:
    """Check before measuring that records can be appended to ``path``, so no measurement is lost
    after it ran. Creates the folder and the (empty) file if needed."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--out: {path} is a directory; expected a results file such as {path / 'results.jsonl'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as error:
        raise InputError(f"--out: cannot write {path}: {error.strerror or error}") from None
    return path


def write_json_atomically(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """One record as a whole JSON file, renamed into place (a reader never sees half of it)."""
    replace_atomically(path, json.dumps(_finite(record), default=str))


def replace_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a new file created exclusively in ``path``'s folder (``mkstemp``: never a file or
    symlink someone planted at a predictable name), then rename it over ``path``."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, 0o644)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) == b"\n"


def _finite(value: Any) -> Any:
    """NaN and ±Inf become None (JSON has no NaN): a missing number is stored as missing, never as NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # NumPy scalars and arrays
        return _finite(value.tolist())
    return value


def _jsonable(value: Any) -> Any:
    """NumPy scalars and arrays, tuples and paths in records become plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise InputTypeError(f"record: a value of type {type(value).__name__} cannot be stored as JSON")


#: Fields every record has, with their types: what the readers rely on.
REQUIRED_FIELDS = {"dataset": str, "engine": str, "backend": str, "status": str}
#: Numeric fields a reader computes with (None allowed).
NUMERIC_FIELDS = ("seconds_per_iteration", "object_error", "r_factor", "err_fmag", "wall_seconds", "iterations")


def require_record(record: Any, where: str) -> None:
    """A results line must be a record: a JSON object with the identity fields, numbers where numbers belong."""
    if not isinstance(record, dict):
        raise InputError(f"results file: {where} holds a JSON {type(record).__name__}, expected a record (object)")
    for name, kind in REQUIRED_FIELDS.items():
        if not isinstance(record.get(name), kind):
            raise InputError(f"results file: {where} has no {kind.__name__} field {name!r} (got "
                             f"{record.get(name)!r}); not a ptybench record")
    for name in NUMERIC_FIELDS:
        value = record.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(f"results file: {where}: {name} is {value!r}, expected a number or null")


def read_records(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Every complete record in the files, in order; a torn record (an interrupted write) is skipped with a
    warning, anything else that is not a record is an InputError naming the file and the line."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    records = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"results file: {path} does not exist")
        records.extend(record for _, record in parse_lines(path, path.read_bytes(), 1))
    return records


def parse_lines(path: Path, data: bytes, first_line: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for the lines of ``data`` (bytes of ``path`` from line ``first_line`` on)."""
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"results file: {path} is not text (expected JSON lines, one record each)") from None
    for number, line in enumerate(lines, start=first_line):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if line.lstrip().startswith("{"):  # the start of a record whose write was cut short
                warnings.warn(f"{path}:{number}: skipped an incomplete record (an interrupted write)", stacklevel=3)
                continue
            raise InputError(f"results file: {path}:{number} is not a JSON record (expected JSON lines "
                             f"written by ptybench, got {line[:40]!r})") from None
        require_record(record, f"{path}:{number}")
        if record.get("schema", 0) > SCHEMA_VERSION:
            raise InputError(f"{path}:{number}: schema {record['schema']} is newer than this ptybench "
                             f"reads ({SCHEMA_VERSION}); upgrade ptybench")
        yield number, record


class StoredKeys:
    """The keys stored in a results file, by status, kept current by reading only what was appended since the
    last look (a byte offset): a sweep checks before every point whether another sweep stored it, and that
    check must not grow with the file (re-reading 600 records cost 97 ms a point)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.offset = 0
        self.lines = 0
        self.by_status: dict[str, set[str]] = {}

    def refresh(self) -> StoredKeys:
        if not self.path.exists():
            return self
        if self.path.stat().st_size < self.offset:  # replaced or truncated: start again
            self.__init__(self.path)
        with open(self.path, "rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next look
        for _, record in parse_lines(self.path, complete, self.lines + 1):
            self.by_status.setdefault(record.get("status"), set()).add(record["key"])
        self.offset += len(complete)
        self.lines += complete.count(b"\n")
        return self

    def keys(self, statuses: Iterable[str] = STATUSES) -> set[str]:
        return set().union(*(self.by_status.get(status, set()) for status in statuses))


def stored_keys(path: str | os.PathLike, statuses: Iterable[str] = STATUSES) -> set[str]:
    """Keys of the records in ``path`` (missing file: none) whose status is in ``statuses``."""
    return StoredKeys(path).refresh().keys(statuses)


def load(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> Any:
    """Records as a pandas DataFrame: one row per measurement, nested fields flattened with dots
    (``dataset.n_frames``, ``memory.host_peak_bytes``, ``stages.propagation``...)."""
    import pandas as pd

    records = read_records(paths)
    frame = pd.json_normalize(records, max_level=1) if records else pd.DataFrame()
    return frame
