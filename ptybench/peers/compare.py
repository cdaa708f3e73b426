"""ptybench's engines beside two peer codes on identical data: pty-chi's DM and LSQML, PtyLab's ePIE.

    python -m ptybench.peers.compare --dataset farfield-64-256 --iterations 10 --out reports/peers/

Each peer lives in its own venv (``make peers`` builds .venv-ptychi and .venv-ptylab in the working
directory; ``PTYBENCH_PTYCHI_PYTHON`` and ``PTYBENCH_PTYLAB_PYTHON`` point elsewhere) and runs as a
subprocess on one exported .npz, so its dependencies never meet ptybench's. A peer whose Python is
missing is reported as skipped, with the reason, and ptybench's side still runs. Every object,
ptybench's and the peers', is scored by the same ptybench metric (``object_error``: the illuminated
region of the true probe, a global complex scale removed). Both codes run the same way: each run is a fresh
process started through the isolation module (its own process group, killed with ptybench and on timeout);
ptybench's side is ``run_ptybench.py`` beside the peers' scripts. Seconds per iteration are the median after
one warm-up iteration, on ``--threads`` threads; with ``--repeats R`` each pair runs R times, the two codes
alternately, and the table gives medians with their range and the median of the paired s/iter ratios
(a busy machine moves both sides of a pair together). ptybench then runs on to 3× the iterations, so the
table also says how long it takes to reach the peer's final error ("time to error": summed iteration
seconds, first iteration included, against the peer's total).

Pairs and the settings that make them comparable (PAIRS): DM runs ptybench's defaults and pty-chi's
DM with its probe update from the same iteration (2); LSQML (pty-chi's least-squares maximum likelihood,
its default mini-batches of 100 frames) is paired twice with ptybench's ML: in mini-batches of 100 frames
(``batch_frames``: preconditioned steepest descent with an exact line search per batch, the same number
of updates per pass), in mini-batches of 32 frames, and with its default full-gradient conjugate
gradients; both with the probe
updated from iteration 0; ePIE runs α = β = 1 in both, and the probe updated from iteration 0 in
ptybench too, since PtyLab's ePIE has no probe-update delay. Every code runs one probe mode (mode 0)
on the CPU in float32/complex64, without position correction. What stays different is each code's
own design: ptybench's DM keeps its power bound at the noise floor ('auto') and its inertia terms,
pty-chi's DM projects exactly and damps its updates by 5 % of the largest illumination; PtyLab visits
the frames in order for two iterations before shuffling them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptybench.datasets import Dataset, load
from ptybench.engines.metrics import illuminated_region, object_error
from ptybench.engines.photons import photon_scale
from ptybench.engines.validation import frame_corners
from ptybench.isolation import run_child

HERE = Path(__file__).resolve().parent
PEERS = {
    "pty-chi": {"script": HERE / "run_ptychi.py", "env": "PTYBENCH_PTYCHI_PYTHON",
                "default": ".venv-ptychi/bin/python", "package": "ptychi==2.2.0"},
    "PtyLab": {"script": HERE / "run_ptylab.py", "env": "PTYBENCH_PTYLAB_PYTHON",
               "default": ".venv-ptylab/bin/python", "package": "ptylab==0.3.7"},
}


@dataclass(frozen=True)
class Pair:
    """One ptybench engine and its counterpart; ``peer_settings`` go to the peer script as JSON."""

    engine: str
    parameters: dict[str, Any]
    peer: str
    peer_engine: str
    peer_settings: dict[str, Any]
    #: How the table names ptybench's side (default: the engine).
    label: str = ""


PAIRS = (
    Pair("DM", {"engine": "DM", "probe_update_start": 2}, "pty-chi", "DM", {"probe_update_start": 2}),
    Pair("ML", {"engine": "ML", "probe_update_start": 0, "batch_frames": 100}, "pty-chi", "LSQML",
         {"probe_update_start": 0, "batch_size": 100}, label="ML, mini-batches of 100"),
    Pair("ML", {"engine": "ML", "probe_update_start": 0, "batch_frames": 32}, "pty-chi", "LSQML",
         {"probe_update_start": 0, "batch_size": 100}, label="ML, mini-batches of 32"),
    Pair("ML", {"engine": "ML", "probe_update_start": 0}, "pty-chi", "LSQML",
         {"probe_update_start": 0, "batch_size": 100}, label="ML, full gradient"),
    Pair("ePIE", {"engine": "ePIE", "alpha": 1.0, "beta": 1.0, "probe_update_start": 0}, "PtyLab", "ePIE",
         {"alpha": 1.0, "beta": 1.0}),
)


@dataclass
class Run:
    """One reconstruction's outcome: status 'ok', 'skipped' or 'failed', with the reason (or a note)."""

    code: str
    engine: str
    status: str
    seconds_per_iteration: float | None = None
    object_error: float | None = None
    reason: str = ""
    seconds: list[float] = field(default_factory=list)
    #: ptybench only: object error after each iteration, run on to ``CHASE`` × the peer's iterations.
    errors: list[float] = field(default_factory=list)
    #: s/iter of each repeat (``--repeats``), in run order; ``seconds_per_iteration`` is their median and
    #: ``seconds``/``errors`` are the median repeat's.
    repeat_seconds: list[float] = field(default_factory=list)


def median_repeat(runs: list[tuple[Run, np.ndarray | None]]) -> tuple[Run, np.ndarray | None]:
    """Repeats of one code on one pair as one Run: the repeat with the median s/iter (its object, its
    per-iteration seconds), and every repeat's s/iter kept for the spread and the paired ratio."""
    ok = [(run, obj) for run, obj in runs if run.status == "ok"]
    if not ok:
        return runs[0]
    ranked = sorted(ok, key=lambda item: item[0].seconds_per_iteration)
    run, obj = ranked[(len(ranked) - 1) // 2]
    run.repeat_seconds = [r.seconds_per_iteration for r, _ in ok]
    return run, obj


# --- export: what a peer reads ------------------------------------------------------------------
def export_inputs(data: Dataset, path: str | Path, arrays: dict[str, np.ndarray] | None = None,
                  from_truth: bool = False, probe_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Write the .npz every peer script reads and return its arrays.

    intensities   (N, Y, X) float32 photon counts in detector order (zero frequency at Y//2, X//2),
                  as ptybench stores frames; masked pixels 0. Float data are scaled to photons the way
                  ptybench's engines do (photons_per_unit), so peers see the same flux.
    mask          (Y, X) bool, True = measured, detector order.
    positions_px  (N, 2) float64 top-left frame corners (row, col) in object pixels: the whole pixels
                  ptybench's engines use (``frame_corners``), so every code fits the same model.
    initial_object (A, B) complex64, mode 0 of ptybench's initial guess.
    initial_probe (Y, X) complex64, mode 0, on the scale of a unitary FFT: Σ|P|² = photons per frame
                  (times ``probe_scale``: the factor ptybench's engines match the probe's power with).
    object_pixel_m, wavelength_m, distance_m, detector_pixel_m: the geometry (far field:
                  object pixel = λz/(X·detector pixel)), for peers that want metres.
    fresnel_number the Fresnel number of one object pixel, Δ²/(λ z_eff), for near-field data (a cone beam's
                  z_eff = z/M); NaN for far field.

    ``from_truth`` starts from the ground truth instead (a diagnostic: then every engine's object error
    must stay near its noise floor, which checks the conventions of each peer's layout). ``arrays``:
    ``data.arrays()`` when the caller has them already (the frames are made only once).
    """
    arrays = data.arrays() if arrays is None else arrays
    frames = arrays["diffraction_data"]
    integer = np.issubdtype(frames.dtype, np.integer)
    scale = photon_scale(frames, integer, None).photons_per_unit
    if from_truth:
        truth = data.ground_truth()
        initial_object, initial_probe = truth.object, truth.probe
    else:
        initial_object, initial_probe = arrays["initial_object"], arrays["initial_probe"]
    spec = data.spec
    wavelength = spec.wavelength_m if spec is not None else 1.2398419843320026e-9 / data.energy_kev
    exported = {
        "intensities": (frames.astype(np.float32) * np.float32(scale)),
        "mask": np.asarray(arrays["mask"], dtype=bool),
        "positions_px": frame_corners(arrays["scan_positions"]).astype(np.float64),
        "initial_object": np.asarray(initial_object[0], dtype=np.complex64),
        "initial_probe": np.asarray(initial_probe[0], dtype=np.complex64) * np.float32(np.sqrt(scale) * probe_scale),
        "object_pixel_m": np.float64(data.object_pixel_m),
        "wavelength_m": np.float64(wavelength),
        "distance_m": np.float64(data.distance_m),
        "detector_pixel_m": np.float64(data.detector_pixel_m),
        "fresnel_number": np.float64(data.engine_parameters().get("fresnel_number") or np.nan),
    }
    np.savez(path, **exported)
    return exported


# --- running --------------------------------------------------------------------------------------
def peer_python(peer: str, root: Path | None = None) -> Path:
    """The peer venv's Python: its environment variable, else the default venv under the checkout."""
    spec = PEERS[peer]
    value = os.environ.get(spec["env"])
    if value:
        return Path(value)
    return (root or Path.cwd()) / spec["default"]


def run_peer(pair: Pair, python: Path, inputs: Path, out_dir: Path, iterations: int, threads: int, seed: int,
             timeout: float = 3600.0) -> tuple[Run, np.ndarray | None]:
    """Run one peer script; a missing Python is 'skipped', a failing script 'failed' with its last words."""
    label = f"{pair.peer} {pair.peer_engine}"
    if not python.is_file():
        spec = PEERS[pair.peer]
        return Run(pair.peer, pair.peer_engine, "skipped",
                   reason=f"no Python at {python} (set {spec['env']} or run `make peers` for "
                          f"{spec['package']})"), None
    tag = f"{pair.peer}-{pair.peer_engine}".lower()
    settings_path, output = out_dir / f"{tag}.json", out_dir / f"{tag}.npz"
    settings = {"engine": pair.peer_engine, "iterations": iterations, "threads": threads, "seed": seed,
                **pair.peer_settings}
    settings_path.write_text(json.dumps(settings, indent=1))
    failure = run_peer_script(python, PEERS[pair.peer]["script"], [str(inputs), str(settings_path), str(output)],
                              threads, out_dir / f"{tag}.log", output, timeout)
    if failure is not None:
        return Run(pair.peer, pair.peer_engine, "failed", reason=f"{label} {failure}"), None
    with np.load(output) as result:
        seconds = [float(s) for s in result["seconds"]]
        note = ("no detector mask in PtyLab's ePIE: masked pixels fitted as zeros"
                if "mask_ignored" in result.files and bool(result["mask_ignored"]) else "")
        return (Run(pair.peer, pair.peer_engine, "ok", median_after_warmup(seconds), reason=note, seconds=seconds),
                result["object"])


def run_peer_script(python: Path, script: Path, arguments: list[str], threads: int, log: Path, output: Path,
                    timeout: float) -> str | None:
    """A peer's script in its own venv, through the isolation module (its own process group, killed with
    ptybench and on timeout), on ``threads`` threads; its output goes to ``log``. None when it wrote
    ``output``, else why not."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                   "OPENBLAS_NUM_THREADS": str(threads), "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"}
    outcome = run_child([str(python), str(script), *arguments], environment, timeout)
    log.write_text(outcome.stdout + outcome.stderr)
    if outcome.timed_out:
        return f"timed out after {timeout:.0f} s"
    if outcome.returncode != 0 or not output.is_file():
        last = (outcome.stderr.strip() or outcome.stdout.strip() or "no output").splitlines()[-1]
        return f"exited {outcome.returncode}: {last} (log: {log})"
    return None


#: ptybench runs on to this many times the peer's iterations, so the table can say how long it takes to
#: reach the peer's final error (the error is read after every iteration, outside the timed part).
CHASE = 3


def export_ptybench_inputs(arrays: dict[str, np.ndarray], truth: Any, path: Path) -> Path:
    """ptybench's own arrays (one mode) for ``run_ptybench.py``, written once per comparison."""
    np.savez(path, diffraction_data=arrays["diffraction_data"], initial_object=arrays["initial_object"][:1],
             initial_probe=arrays["initial_probe"][:1], scan_positions=arrays["scan_positions"], mask=arrays["mask"],
             true_object=truth.object, true_probe=truth.probe)
    return path


def run_ptybench(pair: Pair, inputs: Path, out_dir: Path, iterations: int, threads: int, seed: int, backend: str,
                 timeout: float = 3600.0) -> tuple[Run, np.ndarray | None]:
    """ptybench's engine in a fresh process, started exactly as a peer's script is (``run_peer_script``);
    ``CHASE`` × ``iterations`` in all, the object (and s/iter) of the first ``iterations`` returned."""
    tag = f"ptybench-{pair.label or pair.engine}".lower().replace(" ", "-").replace(",", "")
    settings_path, output = out_dir / f"{tag}.json", out_dir / f"{tag}.npz"
    settings_path.write_text(json.dumps({**pair.parameters, "iterations": iterations, "chase": CHASE * iterations,
                                         "threads": threads, "seed": seed, "backend": backend}, indent=1))
    failure = run_peer_script(Path(sys.executable), HERE / "run_ptybench.py",
                              [str(inputs), str(settings_path), str(output)], threads, out_dir / f"{tag}.log", output,
                              timeout)
    if failure is not None:
        return Run("ptybench", pair.engine, "failed", reason=f"ptybench {failure}"), None
    with np.load(output) as result:
        seconds = [float(s) for s in result["seconds"]]
        errors = [None if np.isnan(e) else float(e) for e in result["errors"]]
        return (Run("ptybench", pair.engine, "ok", median_after_warmup(seconds[:iterations]), seconds=seconds,
                    errors=errors), result["object"])


def seconds_to_error(run: Run, target: float | None) -> float | None:
    """Summed iteration seconds until the object error first reaches ``target`` (None: never, in the
    iterations run)."""
    if target is None:
        return None
    for count, error in enumerate(run.errors, start=1):
        if error is not None and error <= target:
            return float(sum(run.seconds[:count]))
    return None


def median_after_warmup(seconds: list[float]) -> float:
    """Median seconds per iteration without the first (warm-up: allocation, compilation, caches); the median, as
    everywhere in ptybench, so one iteration disturbed by the machine does not move it."""
    timed = seconds[1:] if len(seconds) > 1 else seconds
    return float(np.median(timed))


# --- table ----------------------------------------------------------------------------------------
COLUMNS = ("pair", "ptybench s/iter", "peer s/iter", "s/iter ratio ptybench/peer", "ptybench obj err",
           "peer obj err", "obj err ratio ptybench/peer", "ptybench s to peer err", "peer s",
           "time-to-error ratio ptybench/peer", "peer status")


def table_rows(results: list[tuple[Pair, Run, Run]]) -> list[dict[str, str]]:
    """One row per pair; a peer that did not run leaves its cells empty and says why in 'peer status'."""

    def number(value: float | None, fmt: str = "{:.4g}") -> str:
        return "" if value is None else fmt.format(value)

    def ratio(a: float | None, b: float | None) -> str:
        return "" if a is None or b is None or b == 0 else f"{a / b:.3g}"

    def seconds_with_spread(run: Run) -> str:
        spread = run.repeat_seconds
        text = number(run.seconds_per_iteration)
        return text + (f" [{min(spread):.3g}–{max(spread):.3g}]" if len(spread) > 1 else "")

    def paired_ratio(ours: Run, theirs: Run) -> str:
        """Repeats run alternately, so each repeat's ratio compares two runs side by side in time: their
        median (and range) is what a busy machine cannot fake."""
        pairs = list(zip(ours.repeat_seconds, theirs.repeat_seconds, strict=False))  # a failed repeat drops out
        if len(pairs) < 2:
            return ratio(ours.seconds_per_iteration, theirs.seconds_per_iteration)
        ratios = sorted(a / b for a, b in pairs)
        return f"{float(np.median(ratios)):.3g} [{ratios[0]:.3g}–{ratios[-1]:.3g}]"

    rows = []
    for pair, ours, theirs in results:
        status = f"{theirs.status}: {theirs.reason}" if theirs.reason else theirs.status
        peer_seconds = float(sum(theirs.seconds)) if theirs.status == "ok" else None
        chase = seconds_to_error(ours, theirs.object_error)
        if chase is None and theirs.object_error is not None and ours.errors:
            chase_text = f"> {sum(ours.seconds):.3g} (not in {len(ours.errors)} it)"
        else:
            chase_text = number(chase)
        rows.append({
            "pair": f"{pair.label or pair.engine} / {pair.peer} {pair.peer_engine}",
            "ptybench s/iter": seconds_with_spread(ours),
            "peer s/iter": seconds_with_spread(theirs) if theirs.status == "ok" else "",
            "s/iter ratio ptybench/peer": paired_ratio(ours, theirs) if theirs.status == "ok" else "",
            "ptybench obj err": number(ours.object_error),
            "peer obj err": number(theirs.object_error),
            "obj err ratio ptybench/peer": ratio(ours.object_error, theirs.object_error),
            "ptybench s to peer err": chase_text,
            "peer s": number(peer_seconds),
            "time-to-error ratio ptybench/peer": ratio(chase, peer_seconds),
            "peer status": status,
        })
    return rows


def write_tables(rows: list[dict[str, str]], out_dir: Path, title: str) -> str:
    """table.csv and table.md in ``out_dir``; returns the markdown."""
    with open(out_dir / "table.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in COLUMNS) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    (out_dir / "table.md").write_text(markdown)
    return markdown


# --- the driver -----------------------------------------------------------------------------------
def compare(dataset: str, iterations: int, out_dir: Path, threads: int = 2, seed: int = 0, backend: str = "numpy",
            engines: list[str] | None = None, from_truth: bool = False, repeats: int = 1
            ) -> list[tuple[Pair, Run, Run]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load(dataset, threads=threads)
    truth = data.ground_truth()
    if truth is None:
        raise SystemExit(f"{dataset}: no ground truth (measured data), so no object error to compare")
    geometry = data.geometry()
    if geometry.propagation != "farfield":
        raise SystemExit(f"{dataset}: the peers are set up for far-field data, got {geometry.propagation}")
    inputs = out_dir / "inputs.npz"
    arrays = data.arrays()
    exported = export_inputs(data, inputs, arrays, from_truth=from_truth)
    if from_truth:
        arrays["initial_object"], arrays["initial_probe"] = truth.object, truth.probe
    our_inputs = export_ptybench_inputs(arrays, truth, out_dir / "ptybench-inputs.npz")
    region = illuminated_region(truth.probe, frame_corners(arrays["scan_positions"]),
                                geometry.object_shape)

    def score(run: Run, obj: np.ndarray | None) -> Run:
        if obj is not None:
            if obj.shape[-2:] != exported["initial_object"].shape:
                run.status, run.reason = "failed", f"object of shape {obj.shape}, expected the export's grid"
            else:
                run.object_error = object_error(obj, truth.object, region)
        return run

    results = []
    # One peer run per repeat serves every pair that asks the same; ptybench and the peer alternate.
    peer_runs: dict[str, list[tuple[Run, np.ndarray | None]]] = {}
    for pair in PAIRS:
        if engines and pair.engine not in engines:
            continue
        key = json.dumps([pair.peer, pair.peer_engine, pair.peer_settings], sort_keys=True)
        cached = peer_runs.setdefault(key, [])
        our_runs = []
        for repeat in range(repeats):
            if len(cached) <= repeat and (not cached or cached[0][0].status == "ok"):
                cached.append(run_peer(pair, peer_python(pair.peer), inputs, out_dir, iterations, threads, seed))
            our_runs.append(run_ptybench(pair, our_inputs, out_dir, iterations, threads, seed, backend))
        theirs, peer_object = median_repeat(cached)
        ours, our_object = median_repeat(our_runs)
        results.append((pair, score(ours, our_object), score(theirs, peer_object)))
        print(f"{pair.label or pair.engine}: ptybench {ours.seconds_per_iteration:.4g} s/iter, object error "
              f"{ours.object_error:.4f}; {pair.peer} {pair.peer_engine}: {theirs.status} "
              + (f"{theirs.seconds_per_iteration:.4g} s/iter, object error {theirs.object_error:.4f}"
                 if theirs.status == "ok" else theirs.reason), flush=True)
    title = (f"ptybench vs peers: {dataset}, {iterations} iterations, {threads} threads, backend {backend}"
             + (f", median of {repeats} alternating repeats [range]" if repeats > 1 else "")
             + (", started from the truth" if from_truth else ""))
    markdown = write_tables(table_rows(results), out_dir, title)
    details = [{"pair": asdict(pair), "ptybench": asdict(ours), "peer": asdict(theirs)}
               for pair, ours, theirs in results]
    (out_dir / "runs.json").write_text(json.dumps({"dataset": dataset, "iterations": iterations,
                                                    "threads": threads, "runs": details}, indent=1, default=str))
    print(markdown)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptybench.peers.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="farfield-64-256", help="catalogue name or .cxi path (far field)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("reports/peers"))
    parser.add_argument("--threads", type=int, default=2, help="threads for every code (OMP and torch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numpy", help="ptybench's backend")
    parser.add_argument("--engines", default="", help="comma-separated subset of ptybench engines: DM,ML,ePIE")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run each pair this many times, ptybench and peer alternately (fresh peer processes); "
                             "the table gives medians, ranges and the median of the paired ratios")
    parser.add_argument("--from-truth", action="store_true",
                        help="diagnostic: start every engine from the ground truth (checks the conventions)")
    args = parser.parse_args(argv)
    if args.iterations < 2:
        parser.error("--iterations: at least 2 (the first is the warm-up)")
    if args.repeats < 1:
        parser.error(f"--repeats: expected an integer ≥ 1, got {args.repeats}")
    engines = [e for e in args.engines.split(",") if e]
    compare(args.dataset, args.iterations, args.out, args.threads, args.seed, args.backend, engines,
            args.from_truth, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
