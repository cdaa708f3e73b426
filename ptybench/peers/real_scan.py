"""ptybench's engines on a measured scan, beside pty-chi and cdtools: R-factor per iteration, images, one table.

    python -m ptybench.peers.real_scan --dataset p25-nearfield --iterations 50 --out reports/real/

A measured scan has no ground truth, so every engine is scored by the R-factor of the object and probe it
returns, Σ M | |D(P·O_j)| − √I_j | / Σ M √I_j, and by err_fmag over the data's own Poisson noise floor
(1 would be a perfect model). cdtools (``cdtools-py``, in its own venv: ``make peers``,
``PTYBENCH_CDTOOLS_PYTHON`` points elsewhere) reconstructs the same file with the settings of its own
example for it (ptybench/peers/run_cdtools.py); its R-factor is that of its own forward model, which also
fits a background, per-frame weights and refined sub-pixel positions, so it is reported beside ours, not as ours.
Two ablations hold those at zero, one and the file's positions, the second with every frame at a whole pixel as
ptybench places them: that row fits the model ptybench's engines fit, so it is the like-for-like comparison.
pty-chi (``ptychi``, its own venv: ``make peers``, ``PTYBENCH_PTYCHI_PYTHON``) runs DM and LSQML from ptybench's
start on the same whole-pixel positions (ptybench/peers/run_ptychi.py), and every epoch's object and probe is
scored by ptybench's forward model, so its R-factors are ours to compare.

Images show the phase of each object on the scanned region, with the data's attribution and licence.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptybench.datasets import load
from ptybench.datasets.measured import ENTRIES, path_of
from ptybench.engines import Reconstruction
from ptybench.engines.modes import expand_modes
from ptybench.engines.photons import photon_scale
from ptybench.engines.validation import frame_corners
from ptybench.peers.compare import PEERS, export_inputs, peer_python, run_peer_script

#: Sub-pixel placement, refined positions and a fitted background, from iteration 10: ptybench's fullest model.
_FULL = {"positions": "subpixel", "position_refinement_start": 10, "background_start": 10}
#: (label, engine, probe modes, extra parameters): each engine at its defaults, and the variants that the
#: real-scan study found to matter (more probe modes; DM with α = 0.5, which does not wander on P25; refined
#: positions; sub-pixel placement; a fitted background; ML in mini-batches).
VARIANTS = (
    ("DM", "DM", 1, {}),
    ("DM α=0.5", "DM", 1, {"alpha": 0.5}),
    ("RAAR", "RAAR", 1, {}),
    ("ePIE", "ePIE", 1, {}),
    ("ePIE, 3 modes", "ePIE", 3, {}),
    ("rPIE", "rPIE", 1, {}),
    ("ML", "ML", 1, {}),
    ("ML, 3 modes", "ML", 3, {}),
    # Position refinement from iteration 10 (engines/positions.py): P25's positions are off by about a pixel.
    ("DM, positions refined", "DM", 1, {"position_refinement_start": 10}),
    ("RAAR, positions refined", "RAAR", 1, {"position_refinement_start": 10}),
    ("ePIE, positions refined", "ePIE", 1, {"position_refinement_start": 10}),
    ("ML, positions refined", "ML", 1, {"position_refinement_start": 10}),
    ("ML, 3 modes, positions refined", "ML", 3, {"position_refinement_start": 10}),
    # Sub-pixel placement (engines/subpixel.py): the file's positions kept to the fraction, then refined to it.
    ("DM α=0.5, sub-pixel", "DM", 1, {"alpha": 0.5, "positions": "subpixel"}),
    ("RAAR, sub-pixel", "RAAR", 1, {"positions": "subpixel"}),
    ("ePIE, sub-pixel", "ePIE", 1, {"positions": "subpixel"}),
    ("ML, sub-pixel", "ML", 1, {"positions": "subpixel"}),
    ("DM α=0.5, sub-pixel, refined", "DM", 1, {"alpha": 0.5, "positions": "subpixel", "position_refinement_start": 10}),
    ("RAAR, sub-pixel, refined", "RAAR", 1, {"positions": "subpixel", "position_refinement_start": 10}),
    ("ePIE, sub-pixel, refined", "ePIE", 1, {"positions": "subpixel", "position_refinement_start": 10}),
    ("ePIE, 3 modes, sub-pixel, refined", "ePIE", 3, {"positions": "subpixel", "position_refinement_start": 10}),
    ("ML, sub-pixel, refined", "ML", 1, {"positions": "subpixel", "position_refinement_start": 10}),
    ("ML, 3 modes, sub-pixel, refined", "ML", 3, {"positions": "subpixel", "position_refinement_start": 10}),
    # The full model: + an incoherent detector background fitted from iteration 10 (engines/background.py).
    ("DM α=0.5, sub-pixel, refined, background", "DM", 1, {"alpha": 0.5, **_FULL}),
    ("RAAR, sub-pixel, refined, background", "RAAR", 1, _FULL),
    ("ePIE, sub-pixel, refined, background", "ePIE", 1, _FULL),
    ("ePIE, 3 modes, sub-pixel, refined, background", "ePIE", 3, _FULL),
    ("ML, sub-pixel, refined, background", "ML", 1, _FULL),
    # ML in mini-batches of 5 frames: 40 steps per pass where the full-gradient CG makes one, and no conjugacy to
    # lose when refinement and the background change the likelihood every iteration (docs/algorithms.md, ML).
    ("ML, batches of 5, sub-pixel, refined, background", "ML", 1, {"batch_frames": 5, **_FULL}),
    ("ML, 3 modes, batches of 5, sub-pixel, refined, background", "ML", 3, {"batch_frames": 5, **_FULL}),
)
CDTOOLS_SCRIPT = Path(__file__).with_name("run_cdtools.py")
#: (label, settings, what the model fits): cdtools' example as it is, and two ablations that hold what ptybench's
#: engines do not fit, so one row compares like with like (ptybench/peers/run_cdtools.py, "fixed", "whole_pixels").
_HELD = {"fixed": ["background", "weights", "translation_offsets"]}
CDTOOLS_VARIANTS = (
    ("cdtools", {}, "its own model: + background, per-frame weights, refined sub-pixel positions"),
    ("cdtools, positions as given", _HELD, "no background, weights or position refinement; sub-pixel positions"),
    ("cdtools, ptybench's model", {**_HELD, "whole_pixels": True},
     "no background, weights or position refinement; whole-pixel positions, as ptybench places frames"),
)
#: Object images per row of the figure.
IMAGES_PER_ROW = 7
CDTOOLS_ENV = "PTYBENCH_CDTOOLS_PYTHON"
#: pty-chi's engines run on the scan (``make peers`` builds its venv), near field through its angular-spectrum
#: propagator (ptybench/peers/run_ptychi.py); each epoch's model is scored by ptybench's forward model.
PTYCHI_ENGINES = ("DM", "LSQML")


@dataclass
class ScanRun:
    label: str
    code: str
    status: str
    r_factor: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    noise_ratio: float | None = None
    reason: str = ""

    @property
    def final_r(self) -> float | None:
        return self.r_factor[-1] if self.r_factor else None


def run_ptybench(dataset: str, label: str, engine: str, modes: int, extra: dict[str, Any], iterations: int,
                 threads: int) -> tuple[ScanRun, np.ndarray]:
    with load(dataset) as data:
        arrays = data.arrays()
        arrays["initial_probe"] = expand_modes(arrays["initial_probe"], modes)
        parameters = {**data.engine_parameters(), "engine": engine, "iterations": iterations, "threads": threads,
                      **extra}
    reconstruction = Reconstruction(**arrays, parameters=parameters)
    result = reconstruction.run()
    noise_ratio = result.final.err_fmag / reconstruction.problem.noise_floor
    return (ScanRun(label, "ptybench", "ok", [float(r.r_factor) for r in result.history],
                    [r.seconds for r in result.history], noise_ratio), result.object)


def score_models(dataset: str, models: list[tuple[np.ndarray, np.ndarray]], threads: int = 1,
                 ) -> list[tuple[float, float]]:
    """(R-factor, err_fmag / noise floor) of each (object (A, B), probe (Y, X) in photons) through ptybench's
    forward model: how another code's result is scored on these data (``Reconstruction.model_quality``)."""
    with load(dataset) as data:
        arrays = data.arrays()
        parameters = {**data.engine_parameters(), "engine": "ePIE", "iterations": 1, "threads": threads,
                      "probe_power": "given"}
    frames = arrays["diffraction_data"]
    # The export's probe is in photons; the Problem scales a given probe by √(photons per unit) itself.
    per_unit = photon_scale(frames, np.issubdtype(frames.dtype, np.integer), None).photons_per_unit
    scores = []
    for obj, probe in models:
        given = {**arrays, "initial_object": np.asarray(obj, np.complex64)[None],
                 "initial_probe": (np.asarray(probe, np.complex64) / np.float32(np.sqrt(per_unit)))[None]}
        scorer = Reconstruction(**given, parameters=parameters)
        err_fmag, r_factor = scorer.model_quality()
        scores.append((r_factor, err_fmag / scorer.problem.noise_floor))
    return scores


def run_ptychi(dataset: str, engine: str, iterations: int, threads: int, out_dir: Path,
               timeout: float = 3600.0) -> tuple[ScanRun, np.ndarray | None]:
    """pty-chi's ``engine`` on the scan from the same start as ptybench's engines (the probe's power matched to
    the data the same way), every epoch's model scored by ptybench's forward model."""
    label = f"pty-chi {engine}"
    python = peer_python("pty-chi")
    if not python.is_file():
        return ScanRun(label, "pty-chi", "skipped",
                       reason=f"no Python at {python} (set {PEERS['pty-chi']['env']} or run `make peers`)"), None
    inputs = out_dir / "ptychi-inputs.npz"
    with load(dataset) as data:
        arrays = data.arrays()
        start = Reconstruction(**arrays, parameters={**data.engine_parameters(), "engine": "ePIE", "iterations": 1})
        export_inputs(data, inputs, arrays, probe_scale=start.calibration()["initial_probe_scale"])
    tag = f"ptychi-{engine.lower()}"
    settings_path, output = out_dir / f"{tag}.json", out_dir / f"{tag}.npz"
    settings_path.write_text(json.dumps({"engine": engine, "iterations": iterations, "threads": threads, "seed": 0,
                                         "keep_models": True, "batch_size": 100}))
    failure = run_peer_script(python, PEERS["pty-chi"]["script"], [str(inputs), str(settings_path), str(output)],
                              threads, out_dir / f"{tag}.log", output, timeout)
    if failure is not None:
        return ScanRun(label, "pty-chi", "failed", reason=failure), None
    with np.load(output) as result:
        scores = score_models(dataset, list(zip(result["objects"], result["probes"], strict=True)), threads)
        return (ScanRun(label, f"pty-chi {result['version']}", "ok", [r for r, _ in scores],
                        [float(s) for s in result["seconds"]], scores[-1][1],
                        reason="scored by ptybench's forward model"), result["object"][None])


def cdtools_python() -> Path:
    return Path(os.environ.get(CDTOOLS_ENV) or Path.cwd() / ".venv-cdtools" / "bin" / "python")


def run_cdtools(dataset: str, iterations: int, threads: int, out_dir: Path, label: str = "cdtools",
                extra: dict[str, Any] | None = None, fits: str = CDTOOLS_VARIANTS[0][2],
                timeout: float = 3600.0) -> tuple[ScanRun, np.ndarray | None]:
    """cdtools on the dataset's file (``extra`` settings for an ablation); 'skipped' without its venv, 'failed'
    with its last words."""
    python = cdtools_python()
    if not python.is_file():
        return ScanRun(label, "cdtools", "skipped",
                       reason=f"no Python at {python} (set {CDTOOLS_ENV} or run `make peers`)"), None
    geometry = ENTRIES[dataset].geometry if dataset in ENTRIES else {}
    settings = {"iterations": iterations, "threads": threads, "seed": 0,
                "propagation_distance": geometry.get("focus_to_sample_m", 3.65e-3), **(extra or {})}
    stem = "cdtools" + "".join(f"-{part}" for part in sorted(extra or {}))
    settings_path, output = out_dir / f"{stem}.json", out_dir / f"{stem}.npz"
    settings_path.write_text(json.dumps(settings))
    source = path_of(dataset) if dataset in ENTRIES else Path(dataset.partition("?")[0])
    failure = run_peer_script(python, CDTOOLS_SCRIPT, [str(source), str(settings_path), str(output)], threads,
                              out_dir / f"{stem}.log", output, timeout)
    if failure is not None:
        return ScanRun(label, "cdtools", "failed", reason=failure), None
    with np.load(output) as result:
        version = str(result["cdtools_version"])
        return (ScanRun(label, f"cdtools {version}", "ok", [float(v) for v in result["r_factor"]],
                        [float(s) for s in result["seconds"]], reason=f"{fits}; Adam, Poisson likelihood"),
                _crop_cdtools(result))


def _crop_cdtools(result: Any) -> np.ndarray:
    """cdtools' object on the scanned region (its array carries a 200-pixel margin)."""
    corners = np.asarray(result["translations_px_initial"])
    top, left = np.floor(corners.min(axis=0)).astype(int)
    height, width = np.ceil(corners.max(axis=0) - corners.min(axis=0)).astype(int) + result["probe"].shape[-1]
    return np.asarray(result["object"])[top:top + height, left:left + width][None]


def scanned_region(dataset: str) -> tuple[slice, slice]:
    """The object pixels every frame's central half sees: where an image means something."""
    with load(dataset) as data:
        corners = frame_corners(data.positions)
        height, width = data.frame_shape
    top, left = corners.min(axis=0) + np.array([height, width]) // 4
    bottom, right = corners.max(axis=0) + 3 * np.array([height, width]) // 4
    return slice(int(top), int(bottom)), slice(int(left), int(right))


def figures(runs: list[tuple[ScanRun, np.ndarray | None]], dataset: str, out_dir: Path) -> list[Path]:
    """R-factor per iteration, and the phase of every object (built on matplotlib's Figure: no global backend)."""
    from matplotlib.figure import Figure

    credit = ENTRIES[dataset].attribution + "; " + ENTRIES[dataset].licence if dataset in ENTRIES else dataset
    credit = textwrap.fill(f"Data: {credit}", 160)  # wrapped: the attribution is shown whole
    ok = [run for run, _ in runs if run.status == "ok"]
    panels = [("each engine at its defaults, and pty-chi", [run for run in ok if run.code.startswith("pty-chi") or (
                   run.code == "ptybench" and "," not in run.label)]),
              ("each engine's fullest model, and cdtools", [run for run in ok if run.code.startswith("cdtools") or (
                   run.code == "ptybench" and "background" in run.label)])]
    curves = Figure(figsize=(12, 6), layout="constrained")
    for index, (title, shown_runs) in enumerate(panels):
        axes = curves.add_subplot(1, 2, index + 1)
        for run in shown_runs:
            axes.plot(np.arange(1, len(run.r_factor) + 1), run.r_factor, label=textwrap.fill(run.label, 45),
                      linestyle="-" if run.code == "ptybench" else "--")
        axes.set(xlabel="iteration (epoch for cdtools)", ylabel="R-factor of the returned model", yscale="log",
                 title=title)
        if shown_runs:
            axes.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    curves.suptitle(f"{dataset}: R-factor per iteration (every run: the table)")
    curves.supxlabel(credit, fontsize=6)
    shown = [(run, obj) for run, obj in runs if obj is not None]
    columns = max(1, min(len(shown), IMAGES_PER_ROW))
    lines = max(1, -(-len(shown) // columns))
    images = Figure(figsize=(2.4 * columns, 2.9 * lines), layout="constrained")
    rows, cols = scanned_region(dataset)
    for index, (run, obj) in enumerate(shown):
        ax = images.add_subplot(lines, columns, index + 1)
        view = obj[0][rows, cols]  # cdtools' object was cropped to ptybench's grid (_crop_cdtools)
        phase = np.angle(view * np.exp(-1j * np.angle(np.mean(view))))
        ax.imshow(phase, cmap="gray", vmin=np.percentile(phase, 1), vmax=np.percentile(phase, 99))
        ax.set_title(f"{textwrap.fill(run.label, 30)}\nR {run.final_r:.4f}", fontsize=8)  # wrapped: no overlap
        ax.set_axis_off()
    images.supxlabel(credit, fontsize=6)
    paths = [out_dir / "r-factor.png", out_dir / "objects.png"]
    curves.savefig(paths[0], dpi=110)
    images.savefig(paths[1], dpi=80)
    return paths


def table(runs: list[ScanRun], iterations: int) -> str:
    lines = [f"| code | variant | R-factor at 10 | R-factor at {iterations} | err_fmag / noise floor "
             "| s/iter (median) |",
             "|---|---|---|---|---|---|"]
    for run in runs:
        if run.status != "ok":
            lines.append(f"| {run.code} | {run.label} | {run.status}: {run.reason} | | | |")
            continue
        at_ten = run.r_factor[min(9, len(run.r_factor) - 1)]
        ratio = f"{run.noise_ratio:.1f}" if run.noise_ratio is not None else "n/a"
        lines.append(f"| {run.code} | {run.label} | {at_ten:.4f} | {run.final_r:.4f} | {ratio} | "
                     f"{np.median(run.seconds):.3f} |")
    return "\n".join(lines)


def study(dataset: str, iterations: int, out_dir: Path, threads: int = 1, with_cdtools: bool = True,
          variants: tuple = VARIANTS, with_ptychi: bool = True) -> list[ScanRun]:
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[ScanRun, np.ndarray | None]] = []
    for label, engine, modes, extra in variants:
        started = time.perf_counter()
        run, obj = run_ptybench(dataset, label, engine, modes, extra, iterations, threads)
        print(f"{label:<16} R {run.final_r:.4f}  ({time.perf_counter() - started:.0f} s)", flush=True)
        runs.append((run, obj))
    for engine in PTYCHI_ENGINES if with_ptychi else ():
        started = time.perf_counter()
        run, obj = run_ptychi(dataset, engine, iterations, threads, out_dir)
        print(f"{run.label:<16} {run.status} {run.final_r or ''} {run.reason} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
        runs.append((run, obj))
    for label, extra, fits in CDTOOLS_VARIANTS if with_cdtools else ():
        run, obj = run_cdtools(dataset, iterations, threads, out_dir, label, extra, fits)
        print(f"{label:<16} {run.status} {run.final_r or ''} {run.reason}", flush=True)
        runs.append((run, obj))
    figures(runs, dataset, out_dir)
    text = table([run for run, _ in runs], iterations)
    (out_dir / "table.md").write_text(text + "\n")
    (out_dir / "runs.json").write_text(json.dumps([asdict(run) for run, _ in runs], indent=1))
    return [run for run, _ in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptybench.peers.real_scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="p25-nearfield", help="a measured catalogue entry (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=50, help="iterations of every run (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="threads of every code (default: %(default)s)")
    parser.add_argument("--no-cdtools", action="store_true", help="without cdtools")
    parser.add_argument("--no-ptychi", action="store_true", help="without pty-chi")
    parser.add_argument("--out", type=Path, default=Path("reports/real"), help="folder (default: %(default)s)")
    args = parser.parse_args(argv)
    out = args.out / args.dataset
    study(args.dataset, args.iterations, out, args.threads, not args.no_cdtools, with_ptychi=not args.no_ptychi)
    print(f"\n{(out / 'table.md').read_text()}\nfigures: {out / 'r-factor.png'}, {out / 'objects.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
