"""Observed spectra to what the network reads, per file format: 4MOST L1 (one spectrum per arm file), 4MOST L1
multi-spectrum files, ESO SDP (vacuum wavelengths). Each written by the test from analytic spectra with a known RV
(within +-150 km/s), a blaze-like continuum, Gaussian noise with its sigma, 2 % quality-flagged pixels and a NaN gap;
`fourmostify` must recover the RV within 0.5 km/s at S/N 50 per A, the normalised flux within 1 % rms of the
noiseless spectrum normalised by the same operator at S/N 250 (beyond the pixel noise itself, and over 2 A
windows), the S/N per A within 5 %, and count the masked
pixels exactly."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.ndimage import median_filter

import gridkit
from gridkit import instruments
from gridkit.errors import GridError
from gridkit.io import write_eso_sdp
from gridkit.io.spectrum import Spectrum
from gridkit.kernels import continuum, frames
from gridkit.observed import PrepareOptions, fourmostify_store
from gridkit.synth import AnalyticSynthesizer
from gridkit.testing.fourmost_files import write_4most_l1, write_4most_l1_multi
from gridkit.testing.observed import observe

INST = instruments.get("4most-hr")
PIXELS = {a.name: a.wavelength() for a in INST.select(None)}
TARGET = INST.wavelength(None)
STARS = (({"teff": 5600.0, "logg": 4.3, "feh": -0.2, "vmic": 1.0}, -132.4), ({"teff": 4800.0, "logg": 2.6, "feh": -0.6, "vmic": 1.4}, 47.9),
         ({"teff": 6300.0, "logg": 4.1, "feh": 0.1, "vmic": 1.2}, 121.3))
PREPARE = PrepareOptions(rv="measure", normalise="continuum")


@pytest.fixture(scope="module")
def truths():
    """Per star: (fine rest-frame wavelength, flux at R = 20000), and the noiseless spectrum on the instrument's pixels
    normalised by the continuum operator (what a grid degraded with --normalise continuum holds)."""
    syn = AnalyticSynthesizer()
    out = []
    for labels, rv in STARS:
        wl = syn.wavelength()
        fine = gridkit.to_resolution(gridkit.from_arrays(wl, syn.synthesize(labels), {}), INST.resolving_power).compute()
        on_pixels = gridkit.rebin(fine, TARGET).compute().flux.values[0].astype(float)
        out.append((wl, fine.flux.values[0].astype(float), rv, continuum.normalise(TARGET, on_pixels)[0]))
    return out


def _observations(truths, snr, medium="air", specsys="BARYCENT"):
    meta = {"specsys": specsys, "ra": 150.0, "dec": -30.0, "mjd": 60500.3, "contnorm": False, "resolving_power": 20000.0}
    return [observe(wl, flux, PIXELS, rv=rv, snr=snr, seed=k, medium=medium, meta={**meta, "star_id": f"star{k}"})
            for k, (wl, flux, rv, _) in enumerate(truths)]


def _write(fmt, observations, folder):
    files = []
    if fmt == "4most-l1":
        for k, ob in enumerate(observations):
            for sp in ob.spectra:
                files.append(write_4most_l1(folder / f"star{k}_L{sp.meta['arm'][0].upper()}1.fits", sp, sp.meta["arm"]))
    elif fmt == "4most-l1-multi":
        for arm in PIXELS:
            files.append(write_4most_l1_multi(folder / f"ob1_H{arm[0].upper()}11.fits", [ob.spectra[list(PIXELS).index(arm)] for ob in observations], arm))
    else:  # one ESO SDP file per star, the arms in one WAVE array
        for k, ob in enumerate(observations):
            parts = ob.spectra
            joined = Spectrum(np.concatenate([s.wavelength for s in parts]), parts[0].medium, np.concatenate([s.flux for s in parts]),
                              np.concatenate([s.sigma for s in parts]), np.concatenate([s.good for s in parts]), meta=dict(parts[0].meta))
            files.append(write_eso_sdp(folder / f"star{k}.fits", joined))
    return files


@pytest.mark.parametrize("fmt,medium", [("4most-l1", "air"), ("4most-l1-multi", "vacuum"), ("eso-sdp", "vacuum")])
def test_rv_continuum_snr_and_masks_are_recovered(truths, tmp_path, fmt, medium):
    for snr in (50.0, 250.0):
        obs = _observations(truths, snr, medium)
        files = _write(fmt, obs, tmp_path / f"{fmt}-{snr:g}")
        survey = xr.open_zarr(fourmostify_store(files, tmp_path / f"{fmt}-{snr:g}.zarr", progress=False, prepare=PREPARE), consolidated=False)
        ids = [str(s) for s in survey.star_id.values]
        for k, ob in enumerate(obs):
            i = ids.index(f"star{k}") if f"star{k}" in ids else k
            assert abs(float(survey.rv[i]) - ob.rv) < 0.5, (fmt, snr, k, float(survey.rv[i]), ob.rv)
            assert float(survey.snr[i]) == pytest.approx(snr, rel=0.05)
            assert int(survey.n_masked[i]) == ob.n_masked
            if snr == 250.0:
                flux = survey.flux.values[i]
                ok = np.isfinite(flux) & np.isfinite(truths[k][3])
                assert ok.mean() > 0.9
                ratio = flux[ok] / truths[k][3][ok] - 1
                noise = 1 / (snr * np.sqrt(0.05))  # the pixel noise itself: 1.8 % at S/N 250 per A on 0.05 A pixels
                beyond = float(np.sqrt(max(np.mean(ratio**2) - noise**2, 0.0)))  # what the preparation adds to the noise
                smooth = float(np.sqrt(np.mean(median_filter(ratio, 41) ** 2)))  # over 2 A: the continuum's error
                assert beyond < 0.01 and smooth < 0.01, (fmt, k, beyond, smooth)
        assert survey.attrs["normalisation"].startswith("continuum")


def test_a_topocentric_spectrum_reports_its_rv_barycentric(truths, tmp_path):
    ob = _observations(truths[:1], 100.0, specsys="TOPOCENT")[0]
    files = _write("4most-l1", [ob], tmp_path)
    survey = xr.open_zarr(fourmostify_store(files, tmp_path / "s.zarr", progress=False, prepare=PREPARE), consolidated=False)
    bc = float(frames.barycentric_correction(150.0, -30.0, 60500.3))
    assert float(survey.barycentric_correction[0]) == pytest.approx(bc)
    assert float(survey.rv[0]) == pytest.approx(ob.rv + bc, abs=0.5)  # the file's RV is topocentric; the catalog's barycentric


def test_bad_files_are_left_out_and_reported_or_refused(truths, tmp_path):
    obs = _observations(truths[:2], 100.0)
    files = _write("4most-l1", obs, tmp_path)
    bad = tmp_path / "broken_LG1.fits"
    bad.write_bytes(files[0].read_bytes()[:5000])  # a truncated FITS file
    with pytest.raises(GridError, match="broken_LG1.fits"):
        fourmostify_store([*files, bad], tmp_path / "a.zarr", progress=False)
    assert not (tmp_path / "a.zarr").exists()
    out = fourmostify_store([*files, bad], tmp_path / "b.zarr", progress=False, skip_bad_files=True)
    survey = xr.open_zarr(out, consolidated=False)
    import json

    failed = json.loads(survey.attrs["failed_files"])
    assert [f for f, _ in failed] == [str(bad)] and "broken_LG1.fits" in failed[0][1]
    assert sorted(map(str, survey.star_id.values)) == ["star0", "star1"]


def uves_sdp(shared_data, folder, rv, seed=5):
    """The UVES Sun times a blaze continuum, shifted by `rv`, with its repeated wavelengths merged, written as an ESO
    SDP 1-D spectrum (air, barycentric) at R = 80000, the way an archive spectrum of a benchmark star comes."""
    from gridkit.observed import spectrum_dataset
    from gridkit.testing.observed import blaze_continuum

    data = np.loadtxt(shared_data / "sun-uves" / "UVES_Sun-1_cleaned_norm.txt")
    ds = spectrum_dataset(data[:, 0], data[:, 1], name="uves")
    wl, flux = ds.wavelength.values, ds.flux.values[0].astype(np.float64)
    rng = np.random.default_rng(seed)
    cont = blaze_continuum(wl, rng)
    sigma = np.full(wl.size, np.nan)
    ok = np.isfinite(flux)
    sigma[ok] = np.abs(flux[ok]) * cont[ok] / 400.0  # the spectrum's own noise is small: a nominal error
    sp = Spectrum(frames.shift_wavelength(wl, rv), "air", flux * cont, sigma, ok,
                  meta={"star_id": "Sun", "object": "Sun (UVES)", "specsys": "BARYCENT", "contnorm": False, "resolving_power": 80000.0,
                        "ra": 0.0, "dec": 0.0, "mjd": 60000.0})
    return write_eso_sdp(folder / f"sun_rv{rv:+.0f}.fits", sp)


def test_the_uves_sun_as_an_eso_archive_spectrum_gives_back_its_rv(shared_data, tmp_path):
    path = uves_sdp(shared_data, tmp_path, rv=-38.7)
    out = fourmostify_store([path], tmp_path / "sun.zarr", arms="green,red", progress=False, prepare=PREPARE)
    survey = xr.open_zarr(out, consolidated=False)
    assert abs(float(survey.rv[0]) - (-38.7)) < 0.5  # the Sun's own RV (asteroid light) is ~0 already
    assert str(survey.star_id.values[0]) == "sun_rv-39" and str(survey.object.values[0]) == "Sun (UVES)"  # one star per file, named after it
    assert survey.attrs["normalisation"].startswith("continuum")
