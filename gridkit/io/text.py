"""Reader and writer of plain text spectra: two columns (wavelength [A], flux), whitespace or comma separated,
`#` comments; more columns are kept in meta as `columns`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GridError


def read_text(path) -> tuple[np.ndarray, np.ndarray, dict]:
    path = Path(path)
    what = "is not a text spectrum (two numeric columns: wavelength [A], flux)"
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise GridError(f"{path} {what}: it is not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start})") from None
    except OSError as exc:
        raise GridError(f"{path} cannot be read: {exc.strerror or exc}") from None
    delimiter = "," if "," in next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "") else None
    try:
        data = np.loadtxt(path, dtype=np.float64, ndmin=2, comments="#", delimiter=delimiter)
    except ValueError as exc:
        reason = str(exc).split("; use `usecols`")[0]  # numpy's hint names its own argument, not ours
        raise GridError(f"{path} {what}: {reason}") from None
    if data.shape[1] < 2 or data.shape[0] < 2:
        raise GridError(f"{path} must have at least 2 columns (wavelength, flux) and 2 rows, got shape {data.shape}")
    meta = {"format": "text", "source": str(path), "units": "Angstrom"}
    if data.shape[1] > 2:
        meta["columns"] = data[:, 2:]
    return data[:, 0], data[:, 1], meta


def write_text(path, wavelength, flux, header: str = "wavelength [Angstrom], flux") -> None:
    np.savetxt(path, np.column_stack([np.asarray(wavelength, float), np.asarray(flux, float)]), fmt="%.6f %.7g", header=header)
