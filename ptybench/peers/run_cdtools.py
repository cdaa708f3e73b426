"""Run cdtools (PyPI ``cdtools-py``) on a near-field ptychography CXI file; runs under cdtools' own venv.

    python run_cdtools.py CXI_PATH SETTINGS.json OUTPUT.npz

Made for the PETRA III P25 near-field scan that ptybench ships as ``datasets/data/p25-nearfield.cxi``
and that cdtools' own ``examples/near_field_ptycho.py`` reconstructs (there named
``PETRAIII_P25_Near_Field_Ptycho.cxi``). The reconstruction follows that example:

    dataset = cdtools.datasets.Ptycho2DDataset.from_cxi(CXI_PATH)
    model = cdtools.models.FancyPtycho.from_dataset(
        dataset, n_modes=1, near_field=True, propagation_distance=3.65e-3,
        units='um', obj_view_crop=-35, loss='poisson_nll')
    recon = cdtools.reconstructors.AdamReconstructor(model, dataset)
    recon.optimize(100, lr=0.04, batch_size=10)     # stage 1
    recon.optimize(50, lr=0.005, batch_size=50)     # stage 2
    model.tidy_probes()

The example's 150 epochs are split 2:1 between its two stages; for another ``iterations`` the same
2:1 split is kept (stage 1 gets round(2/3 · iterations) epochs), unless SETTINGS gives ``stages``
explicitly as ``[[epochs, lr, batch_size], ...]``. Plotting (``inspect``/``compare``) is left out and
the epochs run in the calling thread (``thread=False``; the maths is the same).

SETTINGS (JSON object, every key optional):
  iterations            total epochs (default 50)
  threads               torch intra-op threads, also OMP/MKL_NUM_THREADS (default 1)
  seed                  torch/numpy seed for minibatch shuffling and extra probe modes (default 0)
  n_modes               incoherent probe modes (default 1, as in the example)
  propagation_distance  focus-to-sample distance in m (default 3.65e-3; the CXI file does not store it)
  loss                  cdtools loss name (default "poisson_nll", as in the example)
  stages                explicit schedule [[epochs, lr, batch_size], ...] (overrides the 2:1 split)
  fixed                 parameters held at their start for an ablation, any of "background" (held at
                        zero), "weights" (the file's, here all 1), "translation_offsets" (the file's positions)
                        (default none: cdtools' example fits all three)
  whole_pixels          true: every frame at the nearest whole object pixel, as ptybench's engines place
                        them (the translation offsets start at the rounding, so hold "translation_offsets"
                        to keep them there); the sub-pixel placement's worth measured on cdtools itself
  r_factor_every        compute the amplitude R-factor with the current model every N epochs
                        (default 1; 0 = only after the last epoch). Done outside the timed region.

OUTPUT (npz): ``object`` (complex64, cdtools' full object array, padding included), ``probe``
(complex64, modes × Y × X in the sample plane, i.e. cdtools' basis probes × probe_norm; frame n's
probe is ``weights[n] * probe``), ``loss`` (cdtools' per-epoch loss history), ``seconds`` (wall time
of each epoch), ``r_factor`` (NaN where not computed), ``object_pixel_m`` (row, col), the geometry
(``magnification``, ``z_eff_m``, ``wavelength_m``, ``obj_basis``), the translations (``translations_m``
as stored in the file, ``corrected_translations_m``, ``translations_px_initial`` and
``translations_px``: the (row, col) object pixel of each frame's top-left corner before and after
cdtools' position refinement), ``background``, ``weights``, ``cdtools_version``, ``torch_version``,
``settings`` (JSON) and the notes ``loss_note`` and ``translation_note``.

cdtools' loss ("poisson_nll" with ``SimplePoissonNLLNormalizer``), per epoch:
  L = [ Σ (I_sim + ε − I·ln(I_sim + ε)) − Σ (I + ε − I·ln(I + ε)) ] / (½ · #{pixels with I ≥ 1})
summed over all frames and unmasked detector pixels, ε = 1e-6, I measured counts, I_sim the model
(incoherent mode sum + background²). Up to ε this is the Poisson deviance 2Σ[I_sim − I − I·ln(I_sim/I)]
divided by the number of non-zero pixels: ≈ 1 when the fit is limited by Poisson noise alone. It is a
running value: each minibatch's term is taken before that minibatch's Adam step, so it is not the
loss of the final parameters of the epoch. ``r_factor`` is computed here (not by cdtools) as
Σ| √I_sim − √I | / Σ √I over all frames and unmasked pixels with the model as it stands after the epoch.

Data attribution: PETRA III P25 (DESY) near-field ptychography scan; N. Samadi, A. Karabay, P. Sheng,
C. Qiu, K. Spiers, W. Xu, A. Levitan, M. Guizar-Sicairos; Zenodo 10.5281/zenodo.17899482; CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

#: The parameters of cdtools' model (its attribute names) an ablation may hold: a background is held at zero, the
#: others at their start.
FIXABLE = ("background", "weights", "translation_offsets")
EXAMPLE_STAGES = ((100, 0.04, 10), (50, 0.005, 50))  # cdtools examples/near_field_ptycho.py

TRANSLATION_NOTE = (
    "cdtools maps the file's translations to object pixels through the detector basis and the Fresnel "
    "magnification (+ translation_offsets, refined by Adam); on the P25 file its translations_px_initial "
    "equal ptybench's positions of the same file to 5e-5 px (the top-left corner (row, col) of each frame "
    "on the object grid). Frames are shifted by the sub-pixel remainder (Fourier interpolation)."
)

LOSS_NOTE = "cdtools' loss " + __doc__.split("cdtools' loss ", 1)[1].split("\n\nData attribution", 1)[0].strip()


def schedule(settings: dict[str, Any]) -> list[tuple[int, float, int]]:
    """The example's two Adam stages, scaled 2:1 to ``iterations`` epochs (or ``stages`` as given)."""
    if settings.get("stages"):
        return [(int(n), float(lr), int(bs)) for n, lr, bs in settings["stages"]]
    total = int(settings.get("iterations", 50))
    first = round(total * EXAMPLE_STAGES[0][0] / (EXAMPLE_STAGES[0][0] + EXAMPLE_STAGES[1][0]))
    stages = [(first, *EXAMPLE_STAGES[0][1:]), (total - first, *EXAMPLE_STAGES[1][1:])]
    return [s for s in stages if s[0] > 0]


def run(cxi_path: str, settings: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(settings.get("fixed", ())) - set(FIXABLE))
    if unknown:
        raise SystemExit(f"settings 'fixed': expected some of {sorted(FIXABLE)}, got {unknown}")
    threads = int(settings.get("threads", 1))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("MPLBACKEND", "Agg")

    from importlib.metadata import version

    import cdtools
    import numpy as np
    import torch as t

    t.set_num_threads(threads)
    try:
        t.set_num_interop_threads(1)
    except RuntimeError:
        pass
    seed = int(settings.get("seed", 0))
    t.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (cdtools draws from the legacy global generator)

    propagation_distance = float(settings.get("propagation_distance", 3.65e-3))
    n_modes = int(settings.get("n_modes", 1))
    loss_name = str(settings.get("loss", "poisson_nll"))
    stages = schedule(settings)
    total = sum(s[0] for s in stages)
    r_every = int(settings.get("r_factor_every", 1))

    dataset = cdtools.datasets.Ptycho2DDataset.from_cxi(cxi_path)
    model = cdtools.models.FancyPtycho.from_dataset(
        dataset,
        n_modes=n_modes,
        near_field=True,
        propagation_distance=propagation_distance,
        units="um",
        obj_view_crop=-35,
        loss=loss_name,
    )
    if settings.get("whole_pixels"):
        with t.no_grad():
            pixels = (cdtools.tools.interactions.translations_to_pixel(
                model.obj_basis, dataset.translations.to(t.float32), surface_normal=model.surface_normal)
                - model.min_translation)
            model.translation_offsets.copy_((t.round(pixels) - pixels) / model.translation_scale)
    for name in settings.get("fixed", ()):
        parameter = getattr(model, name)
        if name == "background":
            with t.no_grad():
                parameter.zero_()
        parameter.requires_grad_(False)  # Adam skips a parameter that has no gradient
    recon = cdtools.reconstructors.AdamReconstructor(model, dataset)

    distance = float(dataset.detector_geometry["distance"])
    magnification = (propagation_distance + distance) / propagation_distance
    obj_basis = model.obj_basis.detach().cpu().numpy().astype(np.float64)
    pixel = np.linalg.norm(obj_basis, axis=0)  # (row, col) in metres

    patterns = dataset.patterns.to(t.float32)
    mask = model.mask
    sqrt_meas = t.sqrt(patterns if mask is None else patterns.masked_select(mask))
    r_denominator = float(t.sum(sqrt_meas))
    all_indices = t.arange(len(dataset))

    def r_factor() -> float:
        with t.no_grad():
            sims = []
            for start in range(0, len(dataset), 20):
                idx = all_indices[start:start + 20]
                sims.append(model.forward(idx, dataset.translations[idx].to(t.float32)))
            sim = t.cat(sims)
            if mask is not None:
                sim = sim.masked_select(mask)
            return float(t.sum(t.abs(t.sqrt(sim) - sqrt_meas))) / r_denominator

    seconds: list[float] = []
    r_factors: list[float] = []
    epoch = 0
    for n_epochs, lr, batch_size in stages:
        tick = time.perf_counter()
        for loss in recon.optimize(n_epochs, lr=lr, batch_size=batch_size, thread=False):
            seconds.append(time.perf_counter() - tick)
            epoch += 1
            last = epoch == total
            r = r_factor() if (last or (r_every > 0 and epoch % r_every == 0)) else float("nan")
            r_factors.append(r)
            print(f"epoch {epoch:4d}/{total}  lr {lr:g}  batch {batch_size}  loss {float(loss):.6g}  "
                  f"R {r:.5f}  {seconds[-1]:.2f} s", flush=True)
            tick = time.perf_counter()

    model.tidy_probes()  # as the example does at the end (orthogonalises the probe modes)

    with t.no_grad():
        pix_initial = (cdtools.tools.interactions.translations_to_pixel(
            model.obj_basis, dataset.translations.to(t.float32), surface_normal=model.surface_normal)
            - model.min_translation)
        offsets = (model.translation_scale * model.translation_offsets
                   if model.translation_offsets is not None else t.zeros_like(pix_initial))
        pix_final = pix_initial + offsets
        corrected = model.corrected_translations(dataset)

    obj = model.obj.detach().cpu().numpy().astype(np.complex64)
    probe = (model.probe.detach() * model.probe_norm).cpu().numpy().astype(np.complex64)
    return {
        "object": obj,
        "probe": probe,
        "loss": np.asarray([float(v) for v in model.loss_history], dtype=np.float64),
        "seconds": np.asarray(seconds, dtype=np.float64),
        "r_factor": np.asarray(r_factors, dtype=np.float64),
        "object_pixel_m": pixel,
        "obj_basis": obj_basis,
        "magnification": np.float64(magnification),
        "z_eff_m": np.float64(distance / magnification),
        "propagation_distance_m": np.float64(propagation_distance),
        "detector_distance_m": np.float64(distance),
        "wavelength_m": np.float64(dataset.wavelength),
        "translations_m": dataset.translations.cpu().numpy().astype(np.float64),
        "corrected_translations_m": corrected.cpu().numpy().astype(np.float64),
        "translations_px_initial": pix_initial.cpu().numpy().astype(np.float64),
        "translations_px": pix_final.cpu().numpy().astype(np.float64),
        "min_translation_px": model.min_translation.detach().cpu().numpy().astype(np.float64),
        "obj_view_slice": np.asarray([model.obj_view_slice[0].start or 0,
                                      model.obj_view_slice[0].stop or 0], dtype=np.int64),
        "background": (model.background.detach() ** 2).cpu().numpy(),
        "weights": model.weights.detach().cpu().numpy(),
        "stages": np.asarray(stages, dtype=np.float64),
        "cdtools_version": np.str_(version("cdtools-py")),
        "torch_version": np.str_(t.__version__),
        "settings": np.str_(json.dumps({**settings, "stages": stages, "n_modes": n_modes,
                                        "loss": loss_name, "seed": seed, "threads": threads,
                                        "propagation_distance": propagation_distance})),
        "loss_note": np.str_(LOSS_NOTE),
        "translation_note": np.str_(TRANSLATION_NOTE),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    cxi_path, settings_path, output_path = argv
    settings = json.loads(Path(settings_path).read_text())
    result = run(cxi_path, settings)
    import numpy as np

    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    np.savez(output_path, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
