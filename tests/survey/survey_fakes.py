"""A stand-in Posterior with the interface of `cinn.Posterior`, for testing the survey machinery fast and
without torch: its summaries depend only on (flux, snr, seed, key) like the real one, and it can be slowed
down per star so that a run can be interrupted mid-way. The real model is tested in test_infer.py."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import xarray as xr

from gridkit.store import rng_for

QUANTILES = (0.025, 0.16, 0.5, 0.84, 0.975)
LABELS = ("teff", "logg", "feh")
#: posterior draws per star in the tests on the real tiny network (enough for stable quantiles, ~10 ms per star)
SAMPLES = 512


def write_fake_model(model_dir, wavelength, model_id="fake-model-1", delay=0.0) -> Path:
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "fake.json").write_text(json.dumps({"model_id": model_id, "wavelength": list(map(float, wavelength)), "delay": delay}))
    return model_dir


class FakePosterior:
    label_names = LABELS

    def __init__(self, model_dir):
        doc = json.loads((Path(model_dir) / "fake.json").read_text())
        self.model_id = doc["model_id"]
        self.wavelength = np.asarray(doc["wavelength"])
        self.delay = float(os.environ.get("FAKE_DELAY", doc["delay"]))
        self.device = "cpu"
        self.calibration = None
        self.pid = os.getpid()
        from cinn.transforms import InputScaler  # numpy only: the rule for masked pixels (fill_masked)

        self.scaler = InputScaler(np.ones(self.wavelength.size, np.float32), np.full(self.wavelength.size, 0.1, np.float32), 2.0, 0.5)

    def to(self, device):
        self.device = device
        return self

    def summarize(self, flux, snr, n=4096, seed=0, keys=None, calibrated=True):
        flux = np.asarray(flux)
        keys = np.arange(flux.shape[0]) if keys is None else np.asarray(keys)
        time.sleep(self.delay * flux.shape[0])
        depth = 1.0 - flux.mean(axis=1)
        data = {}
        for i, name in enumerate(LABELS):
            draws = np.stack([rng_for(seed, int(k), i).normal(size=n) for k in keys])  # per-star draws
            centre = {"teff": 5000 + 2000 * depth, "logg": 3 + depth, "feh": -1 + depth}[name]
            samples = centre[:, None] + draws * (100 if name == "teff" else 0.1)
            data[name] = (("star",), samples[:, 0])
            data[f"{name}_quantiles"] = (("star", "quantile"), np.quantile(samples, QUANTILES, axis=1).T)
        data["f_reject"] = (("star",), np.abs(draws[:, 1]) % 1)
        data["flag_extrapolated"] = (("star",), draws[:, 2] > 1.5)
        return xr.Dataset(data, coords={"quantile": list(QUANTILES)})


def load_fake(model_dir):
    return FakePosterior(model_dir)


WAVE = np.linspace(5000.0, 5010.0, 41)


def make_survey(path, n=60, seed=0, wave=WAVE, chunk=16, ids=None, snr=None, extra=True, overwrite=False):
    from gridkit import store

    rng = np.random.default_rng(seed)
    flux = (1 - 0.5 * rng.random((n, wave.size)) * rng.random((n, 1))).astype("f4")
    ds = xr.Dataset(
        {"flux": (("star", "wavelength"), flux, {"units": "1", "long_name": "normalised flux"}),
         "snr": ("star", rng.uniform(30, 300, n) if snr is None else snr, {"units": "1", "long_name": "S/N per A"}),
         "star_id": ("star", np.array(ids if ids is not None else [f"4MOST-{i:06d}" for i in range(n)], dtype=object))},
        coords={"star": np.arange(n), "wavelength": ("wavelength", wave, {"units": "Angstrom"})},
    )
    if extra:
        ds["ra"] = ("star", rng.uniform(0, 360, n), {"units": "deg", "long_name": "right ascension"})
        ds["dec"] = ("star", rng.uniform(-90, 30, n), {"units": "deg", "long_name": "declination"})
        ds["field"] = ("star", np.array([f"F{i % 3}" for i in range(n)], dtype=object))
    ds["flux"] = ds.flux.chunk({"star": chunk})
    store.write_dataset(ds, path, dim="star", region_size=chunk, progress=False, overwrite=overwrite)
    return path


def fake_info(model_dir):
    """The metadata of a fake model without loading it (what `cinn.lazy.model_info` reads from model.json)."""
    from cinn.lazy import ModelInfo

    doc = json.loads((Path(model_dir) / "fake.json").read_text())
    return ModelInfo(doc["model_id"], LABELS, None, np.asarray(doc["wavelength"]))


class CountingLoader:
    """load_fake that counts its calls in this process (`info` gives the metadata without a call)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model_dir):
        self.calls += 1
        return load_fake(model_dir)

    info = staticmethod(fake_info)

    def __dask_tokenize__(self):
        return ("CountingLoader", id(self))


load_fake.info = fake_info
