"""What a synthesis backend is. `gridkit.synth.synthesize` drives any backend through the store writer."""
from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import numpy as np

from ..errors import GridkitError


class SynthesisSkipped(GridkitError):
    """A model the backend cannot compute (e.g. labels outside the atmosphere grid): recorded with its
    reason, the grid goes on."""


@runtime_checkable
class Synthesizer(Protocol):
    """A spectrum synthesis backend.

    Instances must be picklable and cheap to ship: they run on Dask workers, where heavy resources
    (programs, atmosphere tables, line lists) are set up lazily on first use.
    """

    name: str

    def wavelength(self) -> np.ndarray:
        """The output grid in Angstrom (strictly increasing; attribute `medium` of the grid says air/vacuum)."""
        ...

    def synthesize(self, labels: Mapping[str, float]) -> np.ndarray:
        """Continuum-normalised flux (float32, on `wavelength()`) of one model with these labels.
        Raise SynthesisSkipped(reason) for a model the backend cannot compute."""
        ...

    def provenance(self) -> dict:
        """JSON-able description for the grid's attrs (code, versions, line list, atmospheres...)."""
        ...
