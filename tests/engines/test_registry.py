"""engines/registry.py and the backend registry: one registration is all a new engine needs.

A toy engine, defined and registered in this test only, is listed by `ptybench engines`, predicted by
`ptybench plan`, run by `ptybench run` and measured by the asv suite, with no other file touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ptybench.cli import main
from ptybench.engines import engine_names, engine_spec, parse_parameters
from ptybench.engines.backends import backend_descriptor, parse_target
from ptybench.engines.registry import PLUGIN_VARIABLE, MemoryTerms, register, unregister
from ptybench.memory_model import predict_memory

TOY_ENGINE = textwrap.dedent('''
    """A toy engine: measures the Fourier error of the current object and probe, changes nothing."""
    from dataclasses import dataclass

    from ptybench.engines.metrics import FourierErrorSums
    from ptybench.engines.options import StageOptions, option
    from ptybench.engines.registry import MemoryTerms, register


    @dataclass(frozen=True)
    class ToyOptions(StageOptions):
        gain: float = option(1.0, "unused", lambda v: v > 0, "a positive number")


    @register("Toy", options=ToyOptions, memory=MemoryTerms((2, 1), (4, 1), 1.0), propagations_per_frame=1,
              keeps_exit_waves=False, distributed="exact")
    class ToyEngine:
        def __init__(self, problem, options):
            self.problem = problem

        def constants(self):
            return {}

        def iterate(self, iteration):
            problem, kernels, errors = self.problem, self.problem.backend.kernels, FourierErrorSums()
            for start, stop in problem.blocks():
                waves = kernels.exit_waves(problem.probe, problem.views(start, stop))
                detector = problem.propagator.forward(waves, overwrite=True)
                squared, absolute = kernels.fourier_projection(detector, problem.intensities.read(start, stop),
                                                               problem.mask, None)
                errors.add(problem.xp.sum(squared), problem.xp.sum(absolute))
            return errors
''')


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    (tmp_path / "toy_engine.py").write_text(TOY_ENGINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(PLUGIN_VARIABLE, "toy_engine")
    import toy_engine  # noqa: F401  (registers "Toy" in this process)

    yield tmp_path
    unregister("Toy")
    sys.modules.pop("toy_engine", None)


def test_every_builtin_engine_is_registered_with_its_terms():
    assert engine_names() == ("DM", "RAAR", "ePIE", "rPIE", "ePIE-batched", "rPIE-batched", "ML")
    assert [engine_spec(n).keeps_exit_waves for n in engine_names()] == [True, True] + [False] * 5
    assert [engine_spec(n).distributed for n in engine_names()] == ["exact"] * 2 + ["merged"] * 4 + ["exact"]
    assert engine_spec("ePIE").one_frame_at_a_time and not engine_spec("DM").one_frame_at_a_time
    assert not engine_spec("ePIE-batched").one_frame_at_a_time
    assert [engine_spec(n).largest_useful_block() for n in engine_names()] == [None] * 4 + [64, 64, None]


def test_a_name_registered_twice_by_another_class_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register("DM", options=object, memory=MemoryTerms((1, 1), (1, 1), 1), propagations_per_frame=1,
                 keeps_exit_waves=False, distributed="exact")(type("Other", (), {}))
    with pytest.raises(ValueError, match="distributed"):
        register("X", options=object, memory=MemoryTerms((1, 1), (1, 1), 1), propagations_per_frame=1,
                 keeps_exit_waves=False, distributed="sometimes")


def test_toy_engine_is_listed_predicted_and_parsed(toy_module, capsys):
    assert "Toy" in engine_names()
    assert parse_parameters({"engine": "Toy", "gain": 2.0}).stages[0].engine == "Toy"
    assert main(["engines", "Toy"]) == 0
    assert "Toy keys" in capsys.readouterr().out
    assert main(["plan", "--dataset", "farfield-64-256", "--device-memory", "1GB", "--backends", "numpy"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Toy")]
    assert len(rows) == 1 and rows[0].split()[1] == "numpy"
    prediction = predict_memory(load_geometry(), "Toy", "numpy")
    assert "exit_waves" not in prediction.terms and prediction.total_bytes > 0


def load_geometry():
    from ptybench.datasets import load

    return load("farfield-64-256")


@pytest.mark.slow
def test_toy_engine_runs_through_ptybench_run_in_a_fresh_process(toy_module):
    out = toy_module / "r.jsonl"
    subprocess.run([sys.executable, "-m", "ptybench", "run", "--dataset", "farfield-64-256", "--engine", "Toy",
                    "--iterations", "2", "--warmup", "0", "--threads", "1", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    record = json.loads(out.read_text().splitlines()[-1])
    assert (record["engine"], record["status"]) == ("Toy", "ok")
    assert record["err_fmag"] > 0 and record["memory"]["predicted_bytes"] > 0


@pytest.mark.slow
def test_toy_engine_is_measured_by_the_asv_suite(toy_module):
    script = textwrap.dedent('''
        from ptybench.benchmarks.bench_engines import QuickEngineIteration
        assert "Toy" in QuickEngineIteration.params[0], QuickEngineIteration.params
        bench = QuickEngineIteration()
        bench.setup("Toy", "numpy", "farfield-64-256")
        bench.time_iteration("Toy", "numpy", "farfield-64-256")
        bench.teardown()
        first = bench.reconstruction
        bench.setup("Toy", "numpy", "farfield-64-256")  # asv's set-up before its next sample
        bench.time_iteration("Toy", "numpy", "farfield-64-256")
        bench.teardown()
        print(len(bench.reconstruction.history), bench.reconstruction is first)
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # two warm-up iterations, then two timed ones on the same reconstruction: no second build or warm-up
    assert done.stdout.strip() == "4 True"


@pytest.mark.parametrize(("text", "expected"), [("numpy", ("numpy", None)), ("torch:cuda:1", ("torch", "cuda:1")),
                                                ("cupy:0", ("cupy", "0"))])
def test_parse_target(text, expected):
    assert parse_target(text) == expected


def test_parse_target_rejects_unknown_backends():
    with pytest.raises(ValueError, match="backend: expected one of"):
        parse_target("jax")


@pytest.mark.parametrize(("backend", "device", "on_device"), [
    ("numpy", None, False), ("torch", None, False), ("torch", "cpu", False), ("torch", "cuda:1", True),
    ("cupy", None, True), ("cupy", "0", True)])
def test_the_backend_descriptor_says_what_is_device_memory(backend, device, on_device):
    assert backend_descriptor(backend).is_device_memory(device) is on_device


def test_an_installed_packages_entry_point_registers_its_engine(toy_module, monkeypatch):
    """Engines from installed packages come through the "ptybench.engines" entry-point group; a broken one
    warns and the built-in engines still load."""
    import importlib.metadata

    from ptybench.engines import registry

    unregister("Toy")
    sys.modules.pop("toy_engine", None)
    monkeypatch.delenv(PLUGIN_VARIABLE)
    points = [importlib.metadata.EntryPoint("toy", "toy_engine", registry.ENTRY_POINT_GROUP),
              importlib.metadata.EntryPoint("broken", "no_such_module_xyz", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == registry.ENTRY_POINT_GROUP
                        else [])
    monkeypatch.setattr(registry, "_loaded", False)
    with pytest.warns(UserWarning, match="engine plug-in 'broken'"):
        names = registry.engine_names()
    assert "Toy" in names and "DM" in names
