"""Rotational broadening with the classical profile of Gray (The Observation and Analysis of Stellar
Photospheres, Eq. 18.14) and linear limb darkening epsilon:

    G(dv) = [2 (1 - eps) sqrt(1 - x^2) + (pi eps / 2) (1 - x^2)] / [pi v (1 - eps/3)],   x = dv / v, |x| <= 1

On a uniform ln(lambda) grid a velocity shift is a constant number of pixels (dv = c d ln lambda), so the
profile is one kernel per star, exact at every wavelength (no mean-wavelength approximation).
"""
from __future__ import annotations

import math

import numpy as np

from .lsf import convolve_rows

C_KMS = 299_792.458


def gray_profile(dv: np.ndarray, vbroad: float, limb_darkening: float = 0.6) -> np.ndarray:
    """The analytic profile G(dv) in (km/s)^-1 (integrates to 1 over dv); zero outside |dv| < vbroad."""
    eps, v = float(limb_darkening), float(vbroad)
    x = np.asarray(dv, dtype=np.float64) / v
    inside = np.abs(x) < 1
    one = np.where(inside, 1.0 - x**2, 0.0)
    return (2 * (1 - eps) * np.sqrt(one) + 0.5 * math.pi * eps * one) / (math.pi * v * (1 - eps / 3))


def gray_cdf(dv: np.ndarray, vbroad: float, limb_darkening: float = 0.6) -> np.ndarray:
    """The integral of `gray_profile` from -vbroad to dv (0 below, 1 above), in closed form."""
    eps, v = float(limb_darkening), float(vbroad)
    x = np.clip(np.asarray(dv, dtype=np.float64) / v, -1.0, 1.0)
    a = 0.5 * (x * np.sqrt(1 - x**2) + np.arcsin(x) + 0.5 * math.pi)  # integral of sqrt(1-x^2) from -1
    b = x - x**3 / 3 + 2.0 / 3.0  # integral of (1-x^2) from -1
    return (2 * (1 - eps) * a + 0.5 * math.pi * eps * b) / (math.pi * (1 - eps / 3))


def rotation_kernel(vbroad: float, dlnlam: float, limb_darkening: float = 0.6) -> np.ndarray:
    """The rotation kernel (2k+1,) on a ln(lambda) grid of step `dlnlam`: the profile integrated exactly
    over each pixel (so it sums to 1 for any width, and tends to the identity as vbroad -> 0)."""
    if not (vbroad >= 0 and math.isfinite(vbroad)):
        raise ValueError(f"vbroad must be finite and >= 0 km/s, got {vbroad}")
    if not 0 <= limb_darkening <= 1:
        raise ValueError(f"limb_darkening must be in [0, 1], got {limb_darkening}")
    dv = C_KMS * float(dlnlam)  # km/s per pixel
    if vbroad == 0 or vbroad < 1e-6 * dv:
        return np.ones(1)
    k = int(math.ceil(vbroad / dv + 0.5))
    edges = (np.arange(-k, k + 2) - 0.5) * dv
    w = np.diff(gray_cdf(edges, vbroad, limb_darkening))
    return w / w.sum()


def rotate_rows(flux: np.ndarray, dlnlam: float, vbroad, limb_darkening: float = 0.6) -> np.ndarray:
    """Broaden every row of flux (..., n) on a uniform ln(lambda) grid with its own vbroad (km/s):
    `vbroad` is a scalar or an array broadcastable to flux.shape[:-1]. vbroad = 0 returns the input."""
    flux = np.asarray(flux, dtype=np.float64)
    lead = flux.shape[:-1]
    v = np.broadcast_to(np.asarray(vbroad, dtype=np.float64), lead)
    rows = flux.reshape(-1, flux.shape[-1])
    vv = v.reshape(-1)
    out = np.empty_like(rows)
    cache: dict[float, np.ndarray] = {}
    for i in range(rows.shape[0]):
        key = float(vv[i])
        if key not in cache:
            cache[key] = rotation_kernel(key, dlnlam, limb_darkening)
        out[i] = convolve_rows(rows[i], cache[key])
    return out.reshape(flux.shape)
