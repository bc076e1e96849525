"""Pure numpy/scipy kernels of the degradation pipeline: no xarray, no I/O.

- `lnlambda`: segments at gaps, uniform ln(lambda) grids, row interpolation
- `lsf`: Gaussian line-spread function at constant resolving power on a ln(lambda) grid
- `rotation`: the classical (Gray) rotation profile, per-row kernels
- `rebin`: flux-conserving rebinning as a cached sparse matrix
- `noise`: S/N conventions and Gaussian noise with sigma = flux / (S/N per pixel)
"""
from . import lnlambda, lsf, noise, rebin, rotation  # noqa: F401
