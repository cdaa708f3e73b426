"""ptybench's side of a peer comparison, in a fresh process like each peer's, so both codes are measured the same
way (a process per run, started through the isolation module, alternating with the peer).

    python -m ptybench.peers.run_ptybench ARRAYS.npz SETTINGS.json OUTPUT.npz

ARRAYS holds ptybench's own arrays (``diffraction_data``, ``initial_object``, ``initial_probe`` — one mode each —
``scan_positions``, ``mask``, ``true_object``, ``true_probe``); SETTINGS the engine parameters plus ``iterations``
(those whose object is returned) and ``chase`` (how many iterations to run in all, for the time to the peer's
error). OUTPUT gets ``object`` (after ``iterations``), ``seconds`` and ``errors`` (every iteration's).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ptybench.peers.peer_script import main_for


def run(arrays: Any, settings: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from ptybench.engines import Reconstruction

    settings = dict(settings)
    iterations = int(settings.pop("iterations"))
    settings["iterations"] = int(settings.pop("chase"))
    reconstruction = Reconstruction(arrays["diffraction_data"], arrays["initial_object"], arrays["initial_probe"],
                                    arrays["scan_positions"], arrays["mask"], settings,
                                    true_object=arrays["true_object"], true_probe=arrays["true_probe"])
    with reconstruction.problem.backend.thread_limit(settings["threads"]):
        for _ in range(iterations):
            reconstruction.step()
        obj = np.array(reconstruction.object, copy=True)  # ePIE goes on updating the object in place
        while reconstruction.step() is not None:
            pass
    history = reconstruction.history
    return {"object": obj, "seconds": np.array([record.seconds for record in history]),
            "errors": np.array([np.nan if record.object_error is None else record.object_error
                                for record in history])}


if __name__ == "__main__":
    sys.exit(main_for(run, __doc__, sys.argv[1:]))
