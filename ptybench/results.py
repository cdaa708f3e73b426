"""The results store: one JSON line per measurement, appended atomically, loaded into pandas.

A record is written with a single ``write`` of the whole line on a file opened for appending, then
flushed and fsync'ed, so a killed process leaves either the whole line or, at worst, a partial last
line without its newline; readers skip such a tail (and say so) and the next append starts a fresh line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptybench.engines.errors import InputError, InputTypeError
from ptybench.record import SCHEMA_VERSION, STATUSES

#: Fields that identify a measurement: a sweep skips a configuration whose key is already stored.
KEY_FIELDS = ("dataset", "dataset_changes", "engine", "backend", "device", "ranks", "threads", "frames_per_block",
              "iterations", "warmup", "parameters", "repeat")


def measurement_key(record: Mapping[str, Any]) -> str:
    """A short stable hash of the fields that say *what* was measured (not how it came out). The first
    run of a configuration (repeat 0) keeps the key it had before repeats existed."""
    identity = {name: record.get(name) for name in KEY_FIELDS if name != "repeat" or record.get("repeat")}
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
    with open(path, "ab") as stream:
        if stream.tell() > 0 and not _ends_with_newline(path):
            line = "\n" + line  # a previous writer died mid-line: never glue onto its fragment
        stream.write(line.encode())
        stream.flush()
        os.fsync(stream.fileno())
    return full


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
    """Every complete record in the files, in order; a truncated or corrupt line is skipped with a warning."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    records = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"results file: {path} does not exist")
        try:
            lines = path.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"results file: {path} is not text (expected JSON lines, one record each)") from None
        last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == last:  # only the last line can be a write that was cut short
                    warnings.warn(f"{path}:{number}: skipped an incomplete record (an interrupted write)",
                                  stacklevel=2)
                    continue
                raise InputError(f"results file: {path}:{number} is not a JSON record (expected JSON lines "
                                 f"written by ptybench, got {line[:40]!r})") from None
            require_record(record, f"{path}:{number}")
            if record.get("schema", 0) > SCHEMA_VERSION:
                raise InputError(f"{path}:{number}: schema {record['schema']} is newer than this ptybench "
                                 f"reads ({SCHEMA_VERSION}); upgrade ptybench")
            records.append(record)
    return records


def stored_keys(path: str | os.PathLike, statuses: Iterable[str] = STATUSES) -> set[str]:
    """Keys of the records in ``path`` (missing file: none) whose status is in ``statuses``."""
    if not Path(path).exists():
        return set()
    wanted = set(statuses)
    return {record["key"] for record in read_records(path) if record.get("status") in wanted}


def load(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> Any:
    """Records as a pandas DataFrame: one row per measurement, nested fields flattened with dots
    (``dataset.n_frames``, ``memory.host_peak_bytes``, ``stages.propagation``...)."""
    import pandas as pd

    records = read_records(paths)
    frame = pd.json_normalize(records, max_level=1) if records else pd.DataFrame()
    return frame
