"""Atomic data of the synthesis backends, one table each: the solar abundances (with atomic numbers and first
ionisation energies), partition functions, atomic masses, and the labels that scale an element's abundance.

Pure data, no imports from the backends: the analytic model (`physics`, `analytic`), its line list (`linelist`),
the Turbospectrum backend and the label prior all read these tables.
"""
from __future__ import annotations

from typing import NamedTuple


class Element(NamedTuple):
    """An element the analytic model knows: atomic number, solar abundance, first ionisation energy."""

    z: int
    a_sun: float  # A(X) = log10(N_X/N_H) + 12
    chi_ion: float  # [eV]


#: Solar abundances A(X) = log10(N_X/N_H) + 12, Grevesse, Asplund & Sauval (2007) (Turbospectrum's default, as
#: in its makeabund.f); first ionisation energies [eV] (NIST). The elements the analytic model knows: Li to Ba
#: (the lanthanides are left out, see `gridkit.synth.linelist`).
SOLAR_ABUNDANCES: dict[str, Element] = {
    "Li": Element(3, 1.05, 5.392), "C": Element(6, 8.39, 11.260), "N": Element(7, 7.78, 14.534), "O": Element(8, 8.66, 13.618),
    "Na": Element(11, 6.17, 5.139), "Mg": Element(12, 7.53, 7.646), "Al": Element(13, 6.37, 5.986), "Si": Element(14, 7.51, 8.152),
    "S": Element(16, 7.14, 10.360), "K": Element(19, 5.08, 4.341), "Ca": Element(20, 6.31, 6.113), "Sc": Element(21, 3.17, 6.561),
    "Ti": Element(22, 4.90, 6.828), "V": Element(23, 4.00, 6.746), "Cr": Element(24, 5.64, 6.767), "Mn": Element(25, 5.39, 7.434),
    "Fe": Element(26, 7.45, 7.902), "Co": Element(27, 4.92, 7.881), "Ni": Element(28, 6.23, 7.640), "Cu": Element(29, 4.21, 7.726),
    "Zn": Element(30, 4.60, 9.394), "Sr": Element(38, 2.92, 5.695), "Y": Element(39, 2.21, 6.217), "Zr": Element(40, 2.58, 6.634),
    "Ba": Element(56, 2.17, 5.212),
}
#: log10 partition functions (U_I, U_II) near 5000 K (theta = 1; approximate, after Gray's tables), held fixed.
PARTITION = {
    "Li": (0.32, 0.0), "C": (0.97, 0.77), "N": (0.60, 0.95), "O": (0.94, 0.60), "Na": (0.31, 0.0), "Mg": (0.0, 0.31),
    "Al": (0.77, 0.0), "Si": (0.98, 0.75), "S": (0.91, 0.60), "K": (0.34, 0.0), "Ca": (0.07, 0.34), "Sc": (1.08, 1.36),
    "Ti": (1.47, 1.75), "V": (1.55, 1.60), "Cr": (1.02, 0.86), "Mn": (0.81, 0.88), "Fe": (1.40, 1.60), "Co": (1.45, 1.45),
    "Ni": (1.47, 1.00), "Cu": (0.33, 0.03), "Zn": (0.0, 0.30), "Sr": (0.10, 0.34), "Y": (1.00, 1.20), "Zr": (1.50, 1.70),
    "Ba": (0.40, 0.60),
}
#: Atomic masses [amu].
MASS = {"H": 1.008, "Li": 6.94, "C": 12.011, "N": 14.007, "O": 15.999, "Na": 22.99, "Mg": 24.305, "Al": 26.98, "Si": 28.085,
        "S": 32.06, "K": 39.10, "Ca": 40.078, "Sc": 44.96, "Ti": 47.867, "V": 50.94, "Cr": 51.996, "Mn": 54.938,
        "Fe": 55.845, "Co": 58.93, "Ni": 58.69, "Cu": 63.55, "Zn": 65.38, "Sr": 87.62, "Y": 88.91, "Zr": 91.22,
        "Ba": 137.33, "La": 138.9, "Ce": 140.1, "Nd": 144.2, "Eu": 152.0}
#: label -> the element whose abundance it scales, in both backends: A(X) = A_sun(X) + [Fe/H] + label
ABUNDANCE_LABELS = {"li_fe": "Li", "c_fe": "C", "n_fe": "N", "mg_fe": "Mg", "si_fe": "Si", "ca_fe": "Ca", "ti_fe": "Ti", "mn_fe": "Mn"}
