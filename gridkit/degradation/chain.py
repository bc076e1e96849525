"""The published degradation chain (`degrade`) and its provenance, recorded as structured steps.

    native grid --R=80000--> working ln lambda grid (<= 0.025 A) --rotation (Gray, vbroad label)--> R=20000
    --> instrument pixels of the chosen arms --> Gaussian noise at each S/N

`degrade` records the steps it applied in the attribute `degrade_steps` (a JSON list, one object per step with
its parameters; JSON null stands for an infinite resolving power, i.e. unbroadened) beside the human-readable
`degrade_chain`; `chain_options(attrs)` reads them back as the options that repeat the chain on other spectra
(the posterior predictive check does that).
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from .. import instruments as _instruments
from ..errors import GridError
from ..files import jsonable
from ..kernels import lnlambda, lsf, rotation
from ..schema import normalisation_record, validate_grid
from . import ops, params
from .config import DEFAULT_SNR, INTERMEDIATE_RESOLVING_POWER, WORKING_MARGIN, WORKING_STEP, DegradeConfig

STEPS_ATTR = "degrade_steps"


def working_grid(wl_in: np.ndarray, arms: Sequence[_instruments.Arm], step: float = WORKING_STEP, margin: float = WORKING_MARGIN,
                 reach: float = 0.0) -> np.ndarray:
    """The intermediate grid of the chain: per arm, a uniform ln lambda grid whose pixels are no wider than
    `step` (A), spanning the arm plus `margin` A each side (clipped to the input segment that holds the
    arm, one working pixel inside its edge). `reach`: the relative half-width (d lambda / lambda) of the
    broadening kernels; the input must extend that far beyond each arm, or a GridError names the arm."""
    bounds = ops.segment_bounds(wl_in)
    pieces = []
    for arm in arms:
        need_lo, need_hi = arm.wl_min * (1 - reach), arm.wl_max * (1 + reach)
        seg = [(a, b) for a, b in bounds if a <= need_lo and need_hi <= b]
        if not seg:
            raise GridError(
                f"arm {arm.name!r} ({arm.wl_min:g}-{arm.wl_max:g} A) is not covered by the input wavelength grid: it needs "
                f"{need_lo:.2f}-{need_hi:.2f} A in one piece (the arm and the reach of the broadening kernels); the input covers "
                f"{', '.join(f'{a:.2f}-{b:.2f}' for a, b in bounds)} A"
            )
        a, b = seg[0]
        lo = max(arm.wl_min - margin, a + step)
        hi = min(arm.wl_max + margin, b - step)
        grid, _ = lnlambda.lnlambda_span(lo, hi, step / hi)
        pieces.append(grid)
    return np.concatenate(pieces)


def degrade(
    ds: xr.Dataset,
    instrument="4most-hr",
    arms=None,
    snr=DEFAULT_SNR,
    *,
    seed: int = 0,
    snr_convention: str = ops.PER_ANGSTROM,
    input_resolving_power: float | None = None,
    intermediate_resolving_power: float | None = INTERMEDIATE_RESOLVING_POWER,
    working_step: float = WORKING_STEP,
    vbroad=None,
    limb_darkening: float = 0.6,
    normalise=None,
) -> xr.Dataset:
    """The published chain on a base grid flux(model, wavelength), lazily:
    R = 80000 (native grid) -> 0.025 A (ln lambda working grid, per arm) -> rotation (Gray, `vbroad` label)
    -> R = instrument's (quadrature difference from 80000) -> instrument pixels of the chosen arms -> noise
    at each S/N. Returns the cube flux(model, snr, wavelength) (snr=None: no noise, flux(model, wavelength)).

    Validates before building anything: labels present and finite (vbroad needed unless given), the
    wavelength axis, the resolving powers, the S/N values, coverage of the arms. The options are those of
    `DegradeConfig` (its defaults are the published method's).
    """
    cfg = DegradeConfig(instrument=instrument, arms=arms, snr=snr, seed=seed, snr_convention=snr_convention,
                        input_resolving_power=input_resolving_power, intermediate_resolving_power=intermediate_resolving_power,
                        working_step=working_step, vbroad=vbroad, limb_darkening=limb_darkening, normalise=normalise)
    return apply(ds, cfg)


def apply(ds: xr.Dataset, cfg: DegradeConfig) -> xr.Dataset:
    """`degrade` with its options already checked in `cfg`: checks what depends on the grid, then builds the chain."""
    inst = cfg.instrument_
    chosen = inst.select(cfg.arms)
    fl = params.flux(ds)
    if fl.ndim != 2:
        raise GridError(f"degrade needs a base grid flux(model, wavelength), got dims {fl.dims}")
    validate_grid(ds, kind="base", required_labels=("vbroad",) if cfg.vbroad is None else ())
    wl = params.wavelength(ds)
    r_in = params.input_resolving_power(ds, cfg.input_resolving_power)
    r_mid = r_in
    if cfg.intermediate_resolving_power is not None:
        r_mid = params.below(cfg.intermediate_resolving_power, r_in, "intermediate_resolving_power")
    params.below(inst.resolving_power, r_mid, f"the resolving power of {inst.name}")
    v = params.vbroad(ds, cfg.vbroad, fl.dims[0])
    reach = 3.0 / (lsf.FWHM_PER_SIGMA * inst.resolving_power) + float(np.max(v.values, initial=0.0)) / rotation.C_KMS  # 3 sigma + rotation
    work = working_grid(wl, chosen, cfg.working_step, reach=reach)
    target = inst.wavelength(cfg.arms)

    out = ds
    if cfg.intermediate_resolving_power is not None:
        out = ops._to_resolution(out, fl, wl, r_mid, r_in, "error")
    out = ops._rebin_to(out, out.flux, wl, work, "error", "error")
    out = ops._rotate(out, out.flux, work, v, cfg.limb_darkening, "error", cfg.vbroad)
    out = ops._to_resolution(out, out.flux, work, inst.resolving_power, r_mid, "error")
    out = ops._rebin_to(out, out.flux, work, target, "error", "error")
    if cfg.snr is not None:
        out = ops._add_noise(out, out.flux, target, np.asarray(cfg.snr), cfg.seed, cfg.snr_convention)
    if cfg.normalise is not None:  # after the noise, as observed spectra are normalised with theirs
        out = ops._normalise(out, out.flux, target, cfg.normalise)
    steps = chain_steps(cfg, r_in, r_mid)
    return out.assign_attrs(instrument=inst.name, arms=",".join(cfg.arms), resolving_power=float(inst.resolving_power),
                            input_resolving_power=r_in, degrade_chain=describe(steps), normalisation=normalisation_record(cfg.normalise),
                            **{STEPS_ATTR: json.dumps(steps)})


def chain_steps(cfg: DegradeConfig, r_in: float, r_mid: float) -> list[dict]:
    """The steps of the chain with their parameters (JSON-able; null resolving power = infinite)."""
    inst = cfg.instrument_
    steps = []
    if cfg.intermediate_resolving_power is not None:
        steps.append({"op": "to_resolution", "resolving_power": r_mid, "input_resolving_power": r_in})
    steps += [
        {"op": "rebin", "grid": "working", "max_step_angstrom": cfg.working_step, "margin_angstrom": WORKING_MARGIN, "arms": list(cfg.arms)},
        {"op": "rotate", "profile": "gray", "limb_darkening": cfg.limb_darkening,
         "vbroad": "label" if cfg.vbroad is None else cfg.vbroad if np.ndim(cfg.vbroad) == 0 else "array"},
        {"op": "to_resolution", "resolving_power": float(inst.resolving_power), "input_resolving_power": r_mid},
        {"op": "rebin", "grid": "instrument", "instrument": inst.name, "arms": list(cfg.arms)},
    ]
    if cfg.snr is not None:
        steps.append({"op": "add_noise", "snr": list(cfg.snr), "convention": cfg.snr_convention, "seed": cfg.seed, "noise": ops.NOISE_TEXT})
    if cfg.normalise is not None:
        steps.append({"op": "normalise", "operator": "continuum", **cfg.normalise.to_dict()})
    return jsonable(steps)


def describe(steps: Sequence[Mapping]) -> str:
    """The human-readable form of the steps (the `degrade_chain` attribute)."""
    words = []
    for s in steps:
        op = s["op"]
        if op == "to_resolution" and s is steps[0]:
            words.append(f"R={s['resolving_power']:g} on the input grid")
        elif op == "to_resolution":
            words.append(f"R={s['resolving_power']:g}")
        elif op == "rebin" and s["grid"] == "working":
            words.append(f"ln-lambda grid of <= {s['max_step_angstrom']:g} A")
        elif op == "rotate":
            words.append(f"rotation (Gray, limb darkening {s['limb_darkening']:g})")
        elif op == "rebin":
            words.append(f"{s['instrument']} pixels ({','.join(s['arms'])})")
        elif op == "normalise":
            words.append("continuum operator (gridkit.kernels.continuum)")
        elif op == "add_noise":
            words.append(f"Gaussian noise at {len(s['snr'])} S/N ({s['convention']}), seed {s['seed']}")
    return " -> ".join(words)


def chain_options(attrs: Mapping) -> dict:
    """The `degrade` options (no noise) that repeat the chain recorded in a cube's attrs (`degrade_steps`) on
    other base spectra. A cube without recorded steps gets the published chain for its instrument and arms."""
    if "instrument" not in attrs:
        raise GridError("the cube's attrs lack 'instrument': cannot repeat its degradation chain")
    opts: dict = {"instrument": attrs["instrument"]}
    if attrs.get("arms") is not None:
        arms = attrs["arms"]
        opts["arms"] = arms if isinstance(arms, str) else ",".join(map(str, arms))
    if attrs.get("input_resolving_power") is not None:
        opts["input_resolving_power"] = float(attrs["input_resolving_power"])
    steps = json.loads(attrs[STEPS_ATTR]) if STEPS_ATTR in attrs else []
    resolutions = [s for s in steps if s["op"] == "to_resolution"]
    if steps:
        opts["intermediate_resolving_power"] = resolutions[0]["resolving_power"] if len(resolutions) > 1 else None
    for s in steps:
        if s["op"] == "rebin" and s["grid"] == "working":
            opts["working_step"] = float(s["max_step_angstrom"])
        elif s["op"] == "rotate":
            opts["limb_darkening"] = float(s["limb_darkening"])
        elif s["op"] == "normalise":
            opts["normalise"] = {k: v for k, v in s.items() if k not in ("op", "operator")}
    return opts
