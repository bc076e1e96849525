"""The analytic model's line formation: pure kernels on arrays (no I/O, no xarray).

A simplified LTE-like model for tests and demos, NOT radiative transfer (see `gridkit.synth.analytic`). Its
kernels live here, apart from the backend, because the backend, the selection of its line list
(`gridkit.synth.linelist`) and the line positions of the saliency plots all use them. The model, per star:

- one characteristic line-forming layer at T = 0.88 Teff, whose electron pressure Pe, neutral hydrogen density
  N_H and H- continuum opacity kappa_c scale with Teff, log g and [Fe/H] (simple power laws, see `atmosphere`);
- per line, the line-to-continuum opacity ratio at line centre (`line_centre_strength`):
  eta0 = C gf 10^(A(X)-12) f_stage 10^(-theta chi_low) lambda^2 / (U_stage Delta lambda_D kappa_c), theta = 5040/T,
  Saha ionisation between stages I and II and Boltzmann excitation with partition functions fixed at their
  ~5000 K values, A(X) = A_sun(X) + [Fe/H] + [X/Fe] (Grevesse et al. 2007 solar abundances,
  `gridkit.synth.atomic`);
- a Voigt profile H(a, v) (Faddeeva function) with Doppler width from thermal motion (T) and vmic, and damping
  a from radiative plus van der Waals broadening by neutral hydrogen (gamma_6 from the line list, scaling with
  N_H): wings matter for the strongest lines; each line is evaluated only within a window sized for it;
- Balmer lines (H alpha..H epsilon) with n=2 populations from Boltzmann/Saha, a Doppler core and pressure wings
  whose width follows the densities of H atoms and electrons (resonance and Stark broadening), so their wings
  grow with Teff and change with log g; the wing shape is a power law fitted to the solar H alpha; tapered to
  zero 100 A from the line centre (`balmer_opacity`);
- Milne-Eddington emergent flux F/Fc = (1 + b/(1+eta)) / (1 + b) with b = hc/(lambda k T) (the Planck
  function's gradient), so lines saturate, depths stay below 1 and the flux lies in (0, 1].

No molecules (like the shared Turbospectrum grid), no NLTE, no model atmosphere, no rotation: `vbroad` is a
label that the degrade step applies. Wavelengths are in air.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import wofz

from .atomic import MASS

C_KMS = 2.99792458e5
K_B = 1.380649e-16
AMU = 1.66054e-24
T_FRACTION = 0.88  # line-forming layer temperature / Teff
LOG_C = 12.6  # overall line-strength constant: solar mean line depth (5200-6700 A) matches the UVES Sun, 6700-6720 A matches the Turbospectrum benchmark
LOG_PE_SUN, LOG_NH_SUN = 1.0, 17.2
#: Balmer lines: air wavelength [A], log gf (NIST), lower level n = 2 at 10.199 eV.
BALMER = ((6562.797, 0.710), (4861.323, -0.020), (4340.462, -0.447), (4101.734, -0.753), (3970.072, -1.038))
BALMER_CHI, BALMER_WINDOW = 10.199, 100.0
#: Balmer lines form over a deep range of layers: their single-layer sensitivity to T and Pe is damped to this fraction
BALMER_DAMPING = 0.5
#: log10 of the Balmer strength X of the Sun's H alpha (fitted with the wing constants to the UVES Sun)
BALMER_LOG_X_SUN = 1.04


def atmosphere(teff: float, logg: float, feh: float) -> dict:
    """The characteristic line-forming layer: T [K], theta = 5040/T, log10 Pe [dyn cm-2], log10 N_H [cm-3],
    log10 kappa_c (H- bound-free per H atom, arbitrary zero: Pe theta^2.5 10^(0.754 theta))."""
    T = T_FRACTION * teff
    theta = 5040.0 / T
    x = teff / 5777.0 - 1.0
    log_pe = LOG_PE_SUN + 0.5 * (logg - 4.44) + 0.3 * feh + 3.0 * x
    log_nh = LOG_NH_SUN + 0.64 * (logg - 4.44) - 0.3 * feh - 1.0 * x
    log_kc = log_pe + 2.5 * math.log10(theta) + 0.754 * theta
    return {"T": T, "theta": theta, "log_pe": log_pe, "log_nh": log_nh, "log_kc": log_kc}


def doppler_width(wavelength, T, mass_amu, vmic):
    """Doppler width Delta lambda_D = lambda/c sqrt(2kT/m + vmic^2) [A]; wavelength [A], vmic [km/s]."""
    v2 = 2 * K_B * T / (np.asarray(mass_amu) * AMU) / 1e10 + vmic**2
    return np.asarray(wavelength) / C_KMS * np.sqrt(v2)


def stage_fraction(ion, chi_ion, atm, log_u1=0.0, log_u2=0.0) -> np.ndarray:
    """Fraction of an element in stage `ion` (1 = neutral, 2 = singly ionised) from the Saha equation
    log(N_II Pe / N_I) = log(2 U_II / U_I) + 2.5 log T - theta chi_ion - 0.1762; log_u1, log_u2: log10 partition functions."""
    log_r = (math.log10(2.0) + np.asarray(log_u2) - np.asarray(log_u1) + 2.5 * math.log10(atm["T"]) - atm["theta"] * np.asarray(chi_ion)
             - 0.1762 - atm["log_pe"])
    r = 10.0 ** np.clip(log_r, -30, 30)
    return np.where(np.asarray(ion) == 1, 1.0 / (1.0 + r), r / (1.0 + r))


def line_centre_strength(wavelength, chi_low, loggf, ion, log_abund, chi_ion, z_or_mass, teff, logg, feh, vmic, *, masses=None,
                         log_u1=0.0, log_u2=0.0):
    """Line-to-continuum opacity ratio eta0 at line centre, per line (arrays), for one star.

    wavelength [A], chi_low [eV], loggf, ion (1|2), log_abund = A(X), chi_ion [eV]; `masses` [amu] (default
    2 z + 4 from `z_or_mass`); log_u1, log_u2: log10 partition functions of stages I and II; teff [K],
    logg, feh [dex], vmic [km/s]. Lower-level population: N_X f_stage g_low 10^(-theta chi_low) / U_stage."""
    atm = atmosphere(teff, logg, feh)
    mass = masses if masses is not None else 2.0 * np.asarray(z_or_mass) + 4.0
    dld = doppler_width(wavelength, atm["T"], mass, vmic)
    f = stage_fraction(ion, chi_ion, atm, log_u1, log_u2)
    log_u = np.where(np.asarray(ion) == 1, log_u1, log_u2)
    log_eta = (LOG_C + np.asarray(loggf) + np.asarray(log_abund) - 12.0 + np.log10(f) - log_u - atm["theta"] * np.asarray(chi_low)
               + 2 * np.log10(np.asarray(wavelength) / 5000.0) - np.log10(dld) - atm["log_kc"])
    return 10.0**log_eta


def damping_parameter(wavelength, dld, gamma_rad, log_gamma6, atm):
    """Voigt a = Gamma / (4 pi Delta nu_D), Gamma = gamma_rad + gamma_6(1e4 K) N_H (T/1e4)^0.3 [s-1]."""
    gamma = np.asarray(gamma_rad) + 10.0 ** (np.asarray(log_gamma6) + atm["log_nh"]) * (atm["T"] / 1e4) ** 0.3
    dnu = 2.99792458e18 * dld / np.asarray(wavelength) ** 2  # Hz
    return gamma / (4 * math.pi * dnu)


def voigt_h(a, v):
    """The Voigt function H(a, v) = Re w(v + i a), H(0, 0) = 1."""
    return wofz(v + 1j * a).real


def milne_eddington_flux(eta, wavelength, T):
    """Emergent normalised flux (1 + b/(1+eta)) / (1+b), b = hc/(lambda k T): in (0, 1], 1 where eta = 0."""
    b = 1.4388e8 / (np.asarray(wavelength) * T)
    return (1.0 + b / (1.0 + eta)) / (1.0 + b)


def balmer_opacity(wavelength, teff, logg, feh, vmic, lines=BALMER):
    """Balmer-line opacity ratio eta_H on `wavelength` [A], tapered to 0 at 100 A from each centre.

    Strength X = n(H, n=2) gf lambda^2 / (Delta lambda_D kappa_c) from Boltzmann (10.2 eV) and Saha (H I fraction);
    a Doppler core eta = 3 X exp(-v^2) (thermal H + vmic) and pressure wings
    eta = 0.065 X (1 + (dlambda / w)^2)^(-0.65) whose width w = 1 A (lambda/6563)^2 (0.6 N_H/N_H,sun + 0.4 (N_e/N_e,sun)^(2/3))
    grows with the densities of H atoms (resonance broadening) and electrons (Stark broadening). The wing
    power law (dlambda^-1.3) and the constants are fitted to the solar H alpha of the UVES Sun. Balmer lines form
    over many layers: log X relative to the Sun's H alpha is damped by BALMER_DAMPING (single layer: 1)."""
    atm = atmosphere(teff, logg, feh)
    wl = np.asarray(wavelength, dtype=np.float64)
    eta = np.zeros_like(wl)
    f_neutral = float(stage_fraction(1, 13.598, atm))
    ne_rel = 10.0 ** (atm["log_pe"] - LOG_PE_SUN) * (5084.0 / atm["T"])
    nh_rel = 10.0 ** (atm["log_nh"] - LOG_NH_SUN)
    for centre, loggf in lines:
        lo, hi = np.searchsorted(wl, [centre - BALMER_WINDOW, centre + BALMER_WINDOW])
        if hi <= lo:
            continue
        x = wl[lo:hi] - centre
        dld = float(doppler_width(centre, atm["T"], MASS["H"], vmic))
        width = (centre / 6562.8) ** 2 * (0.6 * nh_rel + 0.4 * ne_rel ** (2.0 / 3.0))  # [A]
        log_x = _balmer_log_strength(loggf, centre, atm, f_neutral, dld)
        strength = 10.0 ** (BALMER_LOG_X_SUN + BALMER_DAMPING * (log_x - _BALMER_SUN) + loggf - BALMER[0][1])
        taper = (1.0 - (x / BALMER_WINDOW) ** 2) ** 2
        eta[lo:hi] += strength * (3.0 * np.exp(-((x / dld) ** 2)) + 0.065 * (1.0 + (x / width) ** 2) ** -0.65) * taper
    return eta


def _balmer_log_strength(loggf, centre, atm, f_neutral, dld):
    return (LOG_C + loggf + math.log10(f_neutral) - atm["theta"] * BALMER_CHI + 2 * math.log10(centre / 5000.0)
            - math.log10(dld) - atm["log_kc"])


def _balmer_sun() -> float:
    atm = atmosphere(5777.0, 4.44, 0.0)
    dld = float(doppler_width(BALMER[0][0], atm["T"], MASS["H"], 1.0))
    return _balmer_log_strength(BALMER[0][1], BALMER[0][0], atm, float(stage_fraction(1, 13.598, atm)), dld)


_BALMER_SUN = _balmer_sun()

