"""`ingest`: spectra + label table -> a valid base grid; matching by id column or order; bad input refused
before anything is written."""
import shutil

import numpy as np
import pytest
import xarray as xr
from astropy.table import Table

from gridkit import LABEL_NAMES, open_grid
from gridkit.cli import main
from gridkit.errors import GridError, StoreError
from gridkit.io import ingest, read_spectrum, write_fits, write_text

SPEC = "turbospectrum-benchmark/5777g4.44z+0.00a+0.00t01_6700-6720_xit1.0.spec"


def _labels(n, seed=0):
    rng = np.random.default_rng(seed)
    out = {name: rng.uniform(0, 1, n) for name in LABEL_NAMES}
    out["teff"] = rng.uniform(4000, 6500, n)
    return out


def _spectra(folder, n, ext="spec"):
    wl = 5000 + 0.01 * np.arange(400)
    files = []
    for i in range(n):
        flux = 1 - (0.1 + 0.05 * i) * np.exp(-((wl - 5002) / 0.05) ** 2)
        path = folder / f"star_{i:03d}.{ext}"
        if ext == "spec":
            np.savetxt(path, np.column_stack([wl, flux, flux * 1e7]), fmt="%.3f %.7f %.5e")
        elif ext == "txt":
            write_text(path, wl, flux)
        else:
            write_fits(path, wl, flux)
        files.append(path)
    return wl, files


def test_ingest_by_file_column_in_any_row_order(tmp_path):
    wl, files = _spectra(tmp_path, 5)
    labels = _labels(5)
    order = [3, 0, 4, 1, 2]  # the table lists the spectra in another order, without the extension
    table = Table({"file": [files[i].stem for i in order], **{k: v[order] for k, v in labels.items()}, "snr": np.ones(5)})
    table.write(tmp_path / "labels.ecsv")
    out = ingest(files, tmp_path / "labels.ecsv", tmp_path / "grid.zarr")
    ds = open_grid(out)
    assert ds.flux.dtype == np.float32 and ds.flux.dims == ("model", "wavelength")
    assert ds.wavelength.attrs["medium"] == "air" and ds.wavelength.attrs["units"] == "Angstrom"
    assert ds.attrs["resolving_power"] == np.inf and ds.attrs["generator"] == "gridkit ingest"
    assert "snr" not in ds  # only label columns become labels
    for name in LABEL_NAMES:
        np.testing.assert_array_equal(ds[name].values, labels[name])  # row matched to its file
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    for i, f in enumerate(files):
        np.testing.assert_allclose(ds.flux.values[i], read_spectrum(f)[1], rtol=1e-6)
    assert list(ds.source_file.values) == [f.name for f in files]


def test_ingest_by_order_mixed_formats_and_the_real_benchmark(tmp_path, shared_data):
    _, txt = _spectra(tmp_path, 1, "txt")
    _, fit = _spectra(tmp_path / ".." / tmp_path.name, 1, "fits")
    labels = _labels(2)
    ingest([txt[0], fit[0]], labels, tmp_path / "mixed.zarr")
    assert open_grid(tmp_path / "mixed.zarr").sizes["model"] == 2
    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copy(shared_data / SPEC, bench / "sun.spec")
    Table({k: v[:1] for k, v in labels.items()}).write(tmp_path / "sun.csv")
    ds = open_grid(ingest(bench, tmp_path / "sun.csv", tmp_path / "sun.zarr"))
    assert ds.sizes == {"model": 1, "wavelength": 2001}
    assert float(ds.flux.min()) == pytest.approx(0.38642, abs=1e-5)


def test_bad_input_is_refused_and_nothing_is_written(tmp_path):
    wl, files = _spectra(tmp_path, 3)
    out = tmp_path / "grid.zarr"
    labels = _labels(3)
    with pytest.raises(GridError, match="3 rows for 2 spectra"):
        ingest(files[:2], labels, out)
    with pytest.raises(GridError, match=r"lacks label column\(s\) \['vmic'\]"):
        ingest(files, {k: v for k, v in labels.items() if k != "vmic"}, out)
    nan = dict(labels, feh=np.array([0.0, np.nan, 0.1]))
    with pytest.raises(GridError, match=r"'feh' is missing or NaN.*star_001.spec"):
        ingest(files, nan, out)
    other = tmp_path / "other" / "star_009.spec"
    other.parent.mkdir()
    np.savetxt(other, np.column_stack([wl[:-1], np.ones(wl.size - 1)]))
    with pytest.raises(GridError, match="one wavelength grid.*star_009.spec"):
        ingest(files[:2] + [other], labels, out)
    unsorted = tmp_path / "other" / "star_010.spec"
    np.savetxt(unsorted, np.column_stack([wl[::-1], np.ones(wl.size)]))
    with pytest.raises(GridError, match="star_010.spec.*increase"):
        ingest(files[:2] + [unsorted], labels, out)
    with pytest.raises(GridError, match="no row"):
        ingest(files, dict(labels, file=np.array(["star_000", "star_001", "nope"])), out)
    assert not out.exists()  # nothing half-written
    ingest(files, labels, out)
    with pytest.raises(StoreError, match="exists"):
        ingest(files, labels, out)
    ingest(files[::-1], labels, out, overwrite=True)
    np.testing.assert_allclose(xr.open_zarr(out, consolidated=False).flux.values[0], read_spectrum(files[2])[1], rtol=1e-6)


def test_cli_ingest(tmp_path, capsys):
    _, files = _spectra(tmp_path, 3, "txt")
    labels = _labels(3)
    Table({"filename": [f.name for f in files], **labels}).write(tmp_path / "labels.csv")
    args = ["ingest", *map(str, files), "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "g.zarr")]
    assert main(args) == 0
    assert open_grid(tmp_path / "g.zarr").sizes["model"] == 3
    assert main(args) == 2  # exists
    assert "exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize("ext", ["spec", "fits"])
def test_cli_ingest_turbospectrum_directory_and_fits(tmp_path, ext):
    folder = tmp_path / "spectra"
    folder.mkdir()
    wl, files = _spectra(folder, 3, ext)
    labels = _labels(3)
    Table({"id": [f.stem for f in files][::-1], **{k: v[::-1] for k, v in labels.items()}}).write(tmp_path / "labels.fits")
    assert main(["ingest", str(folder), "--labels", str(tmp_path / "labels.fits"), "--out", str(tmp_path / "g.zarr")]) == 0
    ds = open_grid(tmp_path / "g.zarr")
    np.testing.assert_allclose(ds.wavelength.values, wl)
    np.testing.assert_array_equal(ds.teff.values, labels["teff"])  # matched by the id column, not by order
    depth = 1 - ds.flux.values.min(axis=1)
    np.testing.assert_allclose(depth, [0.1, 0.15, 0.2], atol=2e-3)  # star i has a line of depth 0.1 + 0.05 i
