"""Pure numpy/scipy kernels of the degradation pipeline: no xarray, no I/O.

- `lnlambda`: segments at gaps, uniform ln(lambda) grids, row interpolation
- `lsf`: Gaussian line-spread function at constant resolving power on a ln(lambda) grid
- `rotation`: the classical (Gray) rotation profile, per-row kernels
- `rebin`: flux-conserving rebinning as a cached sparse matrix
- `noise`: S/N conventions and Gaussian noise with sigma = flux / (S/N per pixel)

Preparing observed spectra (observed frame -> rest frame, normalised, masked, with their S/N):

- `frames`: air <-> vacuum (Morton 2000), Doppler shifts and their inverse, the barycentric correction (astropy; VISTA)
- `rv`: radial velocity against a template (ln-lambda CCF search, chi-square refinement, uncertainty)
- `continuum`: the one continuum operator for grids and observations (iterative clipped B-spline per arm)
- `snr`: S/N per pixel and per Angstrom from per-pixel errors
- `masks`: good-pixel masks from QUAL, flux, sigma, ivar and wavelength intervals (Balmer cores, telluric bands)
"""
from . import continuum, frames, lnlambda, lsf, masks, noise, rebin, rotation, rv, snr  # noqa: F401
