"""``ptybench procure``: the fixed workload under the run rules, into a bundle a vendor sends back.

A bundle is a folder: ``results.jsonl`` (every record), ``forecast.json`` (the target forecast),
``report.html`` (the self-contained report) and ``manifest.json`` (workload version, profile, machine,
software versions, git commit, run-rules tier, and the sha256 of every other file). Running the same
command again resumes: points already in ``results.jsonl`` are not measured again, and the forecast,
report and manifest are rewritten from everything stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ptybench import results
from ptybench.engines.errors import InputError
from ptybench.forecast import DEFAULT_RATES, forecast
from ptybench.html_report import write_report
from ptybench.machine import LABEL_VARIABLE, describe_machine, machine_fingerprint
from ptybench.sweep import run_points
from ptybench.workload import Workload

BUNDLE_FILES = ("results.jsonl", "forecast.json", "report.html")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def target_geometry(name: str) -> Any:
    """The target workload's geometry from the catalogue, without generating its data."""
    from ptybench.datasets import load
    from ptybench.memory_model import Geometry

    return Geometry.of(load(name))


def run_procurement(out: str | Path, profile: str = "quick", backends: list[str] | None = None,
                    workload_path: str | Path | None = None, threads: int | None = None,
                    repeats: int | None = None, label: str | None = None, retry_failed: bool = False,
                    progress: bool = True, run: Any = None) -> dict[str, Any]:
    """Measure the profile (resuming), then write forecast, report and manifest. Returns the manifest."""
    workload = Workload.load(workload_path)
    measurements = workload.measurements(profile, backends, threads, repeats)  # checked before anything runs
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} is a file; expected a folder for the bundle")
    out.mkdir(parents=True, exist_ok=True)
    results_path = results.require_writable(out / "results.jsonl")
    previous_label = os.environ.get(LABEL_VARIABLE)
    if label:
        os.environ[LABEL_VARIABLE] = label  # the measuring children inherit it
    try:
        started = time.time()
        run_points(measurements, results_path, retry_failed, progress, **({"run": run} if run else {}))
        return write_bundle(out, workload, profile, wall_seconds=time.time() - started)
    finally:
        if previous_label is None:
            os.environ.pop(LABEL_VARIABLE, None)
        else:
            os.environ[LABEL_VARIABLE] = previous_label


def write_bundle(out: Path, workload: Workload, profile: str, wall_seconds: float | None = None,
                 rates: tuple[float, ...] = DEFAULT_RATES) -> dict[str, Any]:
    """Forecast, report and manifest from the records stored in ``out/results.jsonl``."""
    records = results.read_records(out / "results.jsonl")
    target = str(workload.table.get("target", "seed-2552x768"))
    projections = int(workload.table.get("projections", 1))
    rows = forecast(records, target_geometry(target), projections, list(rates), target_name=target)
    (out / "forecast.json").write_text(json.dumps(rows, indent=1, default=str))
    machine = describe_machine()
    tiers = {record.get("tier") for record in records}
    manifest = {
        "bundle": "ptybench procurement", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "workload_file": workload.path.name, "workload_version": workload.version, "profile": profile,
        "epsilon": workload.epsilon, "repeats": workload.repeats, "target": target, "projections": projections,
        "machine_label": machine["label"], "machine_fingerprint": machine_fingerprint(machine), "machine": machine,
        "git_commit": machine.get("git_commit"), "versions": machine.get("versions"),
        "run_rules_tier": "optimized" if "optimized" in tiers else "baseline",
        "records": len(records), "ok": sum(r.get("status") == "ok" for r in records),
        "validated": sum((r.get("validation") or {}).get("result") == "pass" for r in records),
        "noisy": sum(bool(r.get("noisy")) for r in records),
        "wall_seconds_this_run": wall_seconds,
    }
    write_report(out / "report.html", records, rows, manifests=[manifest])
    manifest["sha256"] = {name: sha256(out / name) for name in BUNDLE_FILES}
    results.write_json_atomically(out / "manifest.json", manifest)
    return manifest


def verify_bundle(folder: str | Path) -> dict[str, Any]:
    """The bundle's manifest after checking every file's sha256 (ValueError naming a changed file)."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise InputError(f"bundle {folder}: no manifest.json (not a `ptybench procure` bundle)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"bundle {folder}: manifest.json is not JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"bundle {folder}: manifest.json holds a {type(manifest).__name__}, expected an object")
    checksums = manifest.get("sha256")
    if not isinstance(checksums, dict) or not checksums:
        raise InputError(f"bundle {folder}: manifest.json has no sha256 checksums, so nothing in the bundle can be "
                         f"verified; refused (write bundles with `ptybench procure`)")
    for name, expected in checksums.items():
        path = folder / name
        if not path.exists():
            raise InputError(f"bundle {folder}: {name} is missing")
        if sha256(path) != expected:
            raise InputError(f"bundle {folder}: {name} changed after the bundle was written (sha256 differs)")
    return manifest


def read_results_and_bundles(paths: list[str]) -> tuple[list[dict], list[dict]]:
    """Records of results files and bundle folders (each bundle verified against its manifest), and the
    bundles' manifests."""
    from ptybench.results import read_records

    records, manifests = [], []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            manifests.append(verify_bundle(path))
            path = path / "results.jsonl"
        records += read_records(path)
    if not records:
        raise InputError(f"results: no records in {', '.join(paths)}")
    return records, manifests
