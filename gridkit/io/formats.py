"""File formats by name suffix, for every reader and writer of the project (one lookup, one place).

- `SPECTRUM_FORMATS`: suffix -> spectrum format ('turbospectrum', 'text', 'fits'): what a directory of spectra
  holds (gridkit.io.ingest) and the format of a file that is not FITS; FITS files are told apart by their
  content (gridkit.io.registry: 'eso-sdp', '4most-l1', '4most-l1-multi', 'fits')
- `TABLE_FORMATS`: suffix -> astropy Table format (label tables read by `gridkit.io.read_labels`; catalog
  exports written by `catalogs.export`)
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

SPECTRUM_FORMATS = {".spec": "turbospectrum", ".txt": "text", ".dat": "text", ".asc": "text", ".csv": "text",
                    ".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".fit.gz": "fits"}
TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits",
                 ".parquet": "parquet", ".vot": "votable", ".votable": "votable", ".xml": "votable"}


def suffix(path, known: Mapping[str, str]) -> str:
    """The longest suffix of `path`'s name (case-insensitive) among `known`, else its last suffix."""
    name = Path(path).name.lower()
    return next((ext for ext in sorted(known, key=len, reverse=True) if name.endswith(ext)), Path(path).suffix.lower())


def format_of(path, known: Mapping[str, str], what: str = "file") -> str:
    """The format `known` gives `path`'s suffix; ConfigError naming the suffix and the known ones otherwise."""
    ext = suffix(path, known)
    if ext not in known:
        raise ConfigError(f"cannot tell the {what} format of {str(path)!r} from its extension {ext!r}; use one of {', '.join(known)}")
    return known[ext]
