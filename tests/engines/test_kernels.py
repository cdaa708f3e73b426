"""Every fused kernel computes what the reference definition in engines/kernels.py computes."""

from __future__ import annotations

import numpy as np
import pytest

from ptybench.engines.backends.numba_kernels import PARALLEL_MIN_SIZE, NumbaKernels
from ptybench.engines.kernels import Kernels

array_api_numpy = pytest.importorskip("array_api_compat.numpy")
REFERENCE, FUSED = Kernels(array_api_numpy), NumbaKernels(array_api_numpy)
#: (n, M_p, M_o, Y, X): one mode and several, each below and above PARALLEL_MIN_SIZE, so both the serial
#: and the parallel (prange) build of every kernel is compared with the reference.
SHAPES = {"single-mode": (5, 1, 1, 16, 12), "modes": (4, 2, 3, 8, 8),
          "single-mode-parallel": (24, 1, 1, 64, 48), "modes-parallel": (8, 2, 2, 48, 48)}


def test_the_parallel_shapes_reach_the_parallel_kernels():
    for name, shape in SHAPES.items():
        assert (np.prod(shape) >= PARALLEL_MIN_SIZE) == name.endswith("parallel"), name


def complex_array(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture(params=list(SHAPES.values()), ids=list(SHAPES))
def case(request):
    n, mp, mo, y, x = request.param
    rng = np.random.default_rng(0)
    mask = rng.random((y, x)) > 0.2
    intensities = np.where(mask, rng.poisson(3.0, (n, y, x)), 0).astype(np.float32)
    return {"probe": complex_array(rng, (mp, y, x)), "views": complex_array(rng, (n, mo, y, x)),
            "waves": complex_array(rng, (n, mp, mo, y, x)), "other": complex_array(rng, (n, mp, mo, y, x)),
            "mask": mask, "intensities": intensities}


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * float(np.abs(b).max()))


def test_exit_waves(case):
    close(FUSED.exit_waves(case["probe"], case["views"]), REFERENCE.exit_waves(case["probe"], case["views"]))


def test_linear_mix(case):
    close(FUSED.linear_mix(case["other"], case["waves"], 2.0), REFERENCE.linear_mix(case["other"], case["waves"], 2.0))


@pytest.mark.parametrize("pbound", [None, 0.25, 1e-6])
def test_fourier_projection(case, pbound):
    fused_waves, reference_waves = case["waves"].copy(), case["waves"].copy()
    fused = FUSED.fourier_projection(fused_waves, case["intensities"], case["mask"], pbound)
    reference = REFERENCE.fourier_projection(reference_waves, case["intensities"], case["mask"], pbound)
    close(fused_waves, reference_waves)
    close(fused[0], reference[0])
    close(fused[1], reference[1])
    # Masked pixels keep their wave exactly.
    np.testing.assert_array_equal(fused_waves[..., ~case["mask"]], case["waves"][..., ~case["mask"]])


@pytest.mark.parametrize(("a", "b"), [(-1.0, 1.0), (-0.5, 0.75)])
def test_difference_map_update(case, a, b):
    fused, reference = case["waves"].copy(), case["waves"].copy()
    overlap = REFERENCE.exit_waves(case["probe"], case["views"])
    FUSED.difference_map_update(fused, case["other"], overlap, a, b)
    REFERENCE.difference_map_update(reference, case["other"], overlap, a, b)
    close(fused, reference)


def test_object_update_terms(case):
    close(FUSED.object_update_terms(case["probe"], case["waves"]),
          REFERENCE.object_update_terms(case["probe"], case["waves"]))


def test_probe_update_terms(case):
    for fused, reference in zip(FUSED.probe_update_terms(case["views"], case["waves"]),
                                REFERENCE.probe_update_terms(case["views"], case["waves"]), strict=True):
        close(fused, reference)


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_likelihood_weights(case, noise):
    fused_waves, reference_waves = case["waves"].copy(), case["waves"].copy()
    fused = FUSED.likelihood_weights(fused_waves, case["intensities"], case["mask"], noise)
    reference = REFERENCE.likelihood_weights(reference_waves, case["intensities"], case["mask"], noise)
    close(fused_waves, reference_waves)
    assert fused[0] == pytest.approx(reference[0], rel=1e-5)
    close(fused[1], reference[1])
    close(fused[2], reference[2])


@pytest.mark.parametrize("moving_probe", [True, False])
def test_line_search_polynomial(case, moving_probe):
    c = case["other"] * np.complex64(0.3) if moving_probe else None
    args = (case["waves"], case["other"], c, case["intensities"], case["mask"], "gaussian")
    np.testing.assert_allclose(FUSED.line_search_polynomial(*args), REFERENCE.line_search_polynomial(*args),
                               rtol=1e-4, atol=1e-6 * np.abs(REFERENCE.line_search_polynomial(*args)).max())


def test_parallel_and_serial_kernels_have_separate_cache_entries():
    """numba keys its disk cache by qualified name, not by ``parallel``: a shared entry would load the
    serial build for both variants (found by a benchmark: the "parallel" kernels ran on one thread)."""
    from ptybench.engines.backends import numba_kernels

    kernels = [numba_kernels._fourier_projection, numba_kernels._likelihood_weights,
               numba_kernels._difference_map_update]
    for dispatch in kernels:
        variants = [cell.cell_contents for cell in dispatch.__closure__
                    if hasattr(cell.cell_contents, "targetoptions")]
        assert sorted(v.targetoptions.get("parallel", False) for v in variants) == [False, True]
        index_files = {v._cache._cache_file._index_name for v in variants}
        assert len(index_files) == 2, index_files


@pytest.fixture
def torch():
    """torch for the tests that compare its kernels; without torch only those skip (not the NumPy ones)."""
    return pytest.importorskip("torch")


def _torch_case(torch, case):
    return {name: torch.from_numpy(np.array(value, copy=True)) for name, value in case.items()}


@pytest.mark.parametrize("pbound", [None, 0.25, 1e-6])
def test_torch_fourier_projection(torch, case, pbound):
    from ptybench.engines.backends.torch_kernels import TorchKernels

    fused = TorchKernels(pytest.importorskip("array_api_compat.torch"))
    t = _torch_case(torch, case)
    reference_waves = case["waves"].copy()
    reference = REFERENCE.fourier_projection(reference_waves, case["intensities"], case["mask"], pbound)
    result = fused.fourier_projection(t["waves"], t["intensities"], t["mask"], pbound)
    close(t["waves"].numpy(), reference_waves)
    close(result[0].numpy(), reference[0])
    close(result[1].numpy(), reference[1])


@pytest.mark.parametrize(("a", "b", "c"), [(-1.0, 1.0, 2.0), (-0.8, 0.9, 2.0)])
def test_torch_difference_map_update_and_linear_mix(torch, case, a, b, c):
    from ptybench.engines.backends.torch_kernels import TorchKernels

    fused = TorchKernels(pytest.importorskip("array_api_compat.torch"))
    t = _torch_case(torch, case)
    close(fused.linear_mix(t["other"], t["waves"], c).numpy(), REFERENCE.linear_mix(case["other"], case["waves"], c))
    reference = case["waves"].copy()
    REFERENCE.difference_map_update(reference, case["other"], case["other"] * 0.5, a, b)
    fused.difference_map_update(t["waves"], t["other"], t["other"] * 0.5, a, b)
    close(t["waves"].numpy(), reference)


def test_reference_kernels_can_be_asked_for_to_measure_the_fused_gain(monkeypatch):
    from ptybench.engines.backends import get_backend

    assert type(get_backend("numpy").kernels) is NumbaKernels
    monkeypatch.setenv("PTYBENCH_KERNELS", "reference")
    assert type(get_backend("numpy").kernels) is Kernels


@pytest.mark.parametrize(("beta", "rpie_alpha"), [(None, None), (1.0, None), (0.9, 0.05)],
                         ids=["ePIE-object-only", "ePIE", "rPIE"])
def test_pie_update_on_a_strided_object_view(torch, case, beta, rpie_alpha):
    """One frame's step: the object view (a slice of the object, updated in place) and the new probe."""
    from ptybench.engines.backends.torch_kernels import TorchKernels

    frame = {name: case[name][0] for name in ("views", "waves", "other")}
    n_modes, height, width = frame["views"].shape
    rng = np.random.default_rng(3)
    obj = complex_array(rng, (n_modes, height + 5, width + 3))

    def run(kernels, to, back):
        target = to(obj.copy())
        view = target[:, 2:2 + height, 1:1 + width]
        new_probe = kernels.pie_update(view, to(frame["views"]), to(case["probe"]), to(frame["other"].copy()),
                                       to(frame["waves"]), 0.9, beta, rpie_alpha)
        return back(target), None if new_probe is None else back(new_probe)

    reference = run(REFERENCE, np.asarray, np.asarray)
    torch_kernels = TorchKernels(pytest.importorskip("array_api_compat.torch"))
    for result in (run(FUSED, np.asarray, np.asarray), run(torch_kernels, torch.from_numpy, lambda t: t.numpy())):
        close(result[0], reference[0])
        assert (result[1] is None) == (beta is None)
        if beta is not None:
            close(result[1], reference[1])


@pytest.mark.parametrize("shape", [(40, 3, 9, 7), (300, 1, 40, 40)], ids=["modes", "parallel"])
def test_scatter_add_adds_overlapping_patches_like_the_loop(shape):
    from ptybench.engines.backends.numba_kernels import scatter_add_views

    n, modes, height, width = shape
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(0, 12, n), rng.integers(0, 10, n)   # heavy overlap
    patches = complex_array(rng, shape)
    power = rng.random((height, width)).astype(np.float32)
    cases = [(np.zeros((modes, height + 12, width + 10), np.complex64), patches),
             (np.zeros((1, height + 12, width + 10), np.float32), np.broadcast_to(power, (n, 1, height, width)))]
    for target, source in cases:
        expected = target.copy()
        for row, col, patch in zip(rows, cols, source, strict=True):
            expected[:, row:row + height, col:col + width] += patch
        scatter_add_views(target, rows, cols, source)
        close(target, expected)


@pytest.mark.parametrize(("probe_modes", "object_modes", "n"), [(1, 1, 40), (2, 3, 7)])
def test_gather_fused_backend_steps_match_their_definitions(probe_modes, object_modes, n):
    """overlap_waves, mixed_overlap_waves, difference_map_update_at, probe_update_terms_at and
    add_object_terms read the object in place; the base Backend methods (gather, then the kernel) define
    what they compute."""
    from ptybench.engines.backends import get_backend
    from ptybench.engines.backends.base import Backend

    backend = get_backend("numpy", threads=2)
    rng = np.random.default_rng(7)
    height, width = 24, 20
    obj = complex_array(rng, (object_modes, height + 15, width + 11))
    probe = complex_array(rng, (probe_modes, height, width))
    waves = complex_array(rng, (n, probe_modes, object_modes, height, width))
    rows, cols = rng.integers(0, 16, n), rng.integers(0, 12, n)
    close(backend.overlap_waves(probe, obj, rows, cols), Backend.overlap_waves(backend, probe, obj, rows, cols))
    for fused, reference in zip(backend.probe_update_terms_at(obj, rows, cols, waves),
                                Backend.probe_update_terms_at(backend, obj, rows, cols, waves), strict=True):
        close(fused, reference)
    fused_target, reference_target = np.zeros_like(obj), np.zeros_like(obj)
    backend.add_object_terms(fused_target, rows, cols, probe, waves)
    Backend.add_object_terms(backend, reference_target, rows, cols, probe, waves)
    close(fused_target, reference_target)
    # DM/RAAR's update in two halves: a one-pass backend keeps part of it in ψ's place, the definitions keep P·O_j
    for c, a, b in ((2.0, -1.0, 1.0), (2.0, 0.8, 0.1)):
        projected = complex_array(rng, waves.shape)
        fused_waves, reference_waves = waves.copy(), waves.copy()
        mix, scratch = np.empty_like(waves), np.empty_like(waves)
        close(backend.mixed_overlap_waves(probe, obj, rows, cols, fused_waves, c, a, b, mix),
              Backend.mixed_overlap_waves(backend, probe, obj, rows, cols, reference_waves, c, a, b,
                                          np.empty_like(waves), scratch))
        backend.difference_map_update_at(probe, obj, rows, cols, fused_waves, projected, a, b)
        Backend.difference_map_update_at(backend, probe, obj, rows, cols, reference_waves, projected, a, b, scratch)
        close(fused_waves, reference_waves)
        assert not np.allclose(fused_waves, waves)  # the update happened, in place


@pytest.mark.parametrize("rpie_alpha", [None, 0.05], ids=["ePIE", "rPIE"])
def test_pie_update_at_128_squared_runs_rows_in_parallel(rpie_alpha):
    """From 128² frames one frame's step runs its rows in parallel (two passes through scratch buffers);
    it computes the reference step, and the scratch kept between calls does not leak into the next."""
    rng = np.random.default_rng(11)
    height = width = 128
    obj = complex_array(rng, (1, height + 4, width + 4))
    for call in range(2):
        shapes = ((1, height, width), (1, 1, height, width), (1, 1, height, width))
        frame = [complex_array(rng, shape) for shape in shapes]
        probe = complex_array(rng, (1, height, width)) * np.float32(1 + call)
        results = []
        for kernels in (REFERENCE, FUSED):
            target = obj.copy()
            new_probe = kernels.pie_update(target[:, 1:1 + height, 2:2 + width], frame[0], probe, frame[1].copy(),
                                           frame[2], 0.9, 0.8, rpie_alpha)
            results.append((target, new_probe))
        close(results[1][0], results[0][0])
        close(results[1][1], results[0][1])


@pytest.mark.parametrize(("probe_modes", "object_modes", "size"), [(1, 1, 64), (2, 3, 40), (1, 1, 128)])
def test_frame_exit_waves(torch, probe_modes, object_modes, size):
    """ePIE's frame start in one pass (rows in parallel from 128²): the copy of a strided object view, the
    exit waves and their detector-side copy, equal to the reference and independent of each other."""
    from ptybench.engines.backends.torch_kernels import NumbaOnTorchKernels

    rng = np.random.default_rng(5)
    obj = complex_array(rng, (object_modes, size + 6, size + 4))
    view = obj[:, 3:3 + size, 1:1 + size]
    probe = complex_array(rng, (probe_modes, size, size))
    reference = REFERENCE.frame_exit_waves(probe, view)
    on_torch = NumbaOnTorchKernels(pytest.importorskip("array_api_compat.torch"))
    torch_result = on_torch.frame_exit_waves(torch.from_numpy(probe), torch.from_numpy(obj)[:, 3:3 + size, 1:1 + size])
    for result in (FUSED.frame_exit_waves(probe, view), tuple(t.numpy() for t in torch_result)):
        for fused, expected in zip(result, reference, strict=True):
            assert fused.shape == expected.shape
            close(fused, expected)
        old_view, waves, detector = result
        view_before = view.copy()
        detector[...] = 0  # three arrays, not views of one another or of the object
        old_view[...] = 0
        close(waves, reference[1])
        np.testing.assert_array_equal(view, view_before)


@pytest.mark.parametrize(("kernels", "scratch"), [("fused", False), ("reference", True)])
def test_dm_keeps_a_p_times_o_block_only_where_the_backend_needs_it(tiny, tiny_arrays, monkeypatch, kernels, scratch):
    """The fused CPU update stores what its second half needs in ψ's place: no P·O_j block (one wave per
    frame of a block less); the reference definitions keep P·O_j in scratch between the halves."""
    from ptybench.engines import Reconstruction

    monkeypatch.setenv("PTYBENCH_KERNELS", kernels)
    reconstruction = Reconstruction(**tiny_arrays, parameters={"engine": "DM", "iterations": 2,
                                                               **tiny.engine_parameters()})
    reconstruction.step()
    assert reconstruction.problem.backend.difference_map_scratch is scratch
    assert ("overlap" in reconstruction.problem._block_buffers) is scratch
