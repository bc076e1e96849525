"""The spectrum formats, registered in one place (in the spirit of astropy's `io.registry`).

- `register(name, identify, read, list_spectra=None, priority=0)`: `identify(path) -> bool` (by content),
  `read(path, which) -> [Spectrum]`, `list_spectra(path) -> [meta dict]` (without the flux arrays; default:
  the metas of `read`), `priority`: identifiers run from the highest priority down, the first that says yes
  names the format.
- `identify(path) -> name`; `read_spectra(path, format=None, which=None) -> [Spectrum]`;
  `list_spectra(path, format=None) -> [dict]`; `formats() -> [name]` (in the order identify tries them).
- `READERS`: name -> reader(path) -> (wavelength [A], flux, meta) of a one-spectrum file as it is, for
  `gridkit.observed`: 'text', 'fits', 'turbospectrum' give the file's values unchecked (repeated wavelengths of
  overlapping orders kept, merged by gridkit.observed); the others (and formats registered later) give the
  one Spectrum's wavelength and its flux with NaN where a pixel is not good, meta with 'medium' and 'sigma'
  (when there is one). The metas of these readers hold only what the file says: no key has the value None.

Built-in formats, in the order identify tries them:

| name | identified by | reader |
| --- | --- | --- |
| 4most-l1-multi | an HDU SPECTAB or FIBMETATAB | gridkit.io.fourmost |
| 4most-l1 | a table with WAVE, FLUX and ERR_FLUX/FLUX_IVAR (or named PHASE3SPECTRUM without ERR) | gridkit.io.fourmost |
| eso-sdp | PRODCATG 'SCIENCE.SPECTRUM', or a table SPECTRUM/PHASE3SPECTRUM with WAVE | gridkit.io.eso |
| fits | any other FITS file (table with wavelength/flux columns, or 1-D image with a WCS) | gridkit.io.fits |
| text | not FITS; suffix .txt .dat .asc .csv | gridkit.io.text |
| turbospectrum | not FITS; suffix .spec | gridkit.io.turbospectrum |

A file that is not FITS but named like one (.fits, .fit, .fits.gz) is refused as such (GridError).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, GridError
from .eso import identify_eso_sdp, list_eso_sdp, read_eso_sdp
from .fits import fits_spectra, read_fits
from .fitsfile import has_fits_name, head_bytes, is_fits
from .formats import SPECTRUM_FORMATS, suffix
from .fourmost import identify_l1, identify_l1_multi, list_l1, list_l1_multi, read_l1, read_l1_multi
from .spectrum import Spectrum
from .text import read_text, text_spectra
from .turbospectrum import read_spec, turbospectrum_spectra


@dataclass(frozen=True)
class Format:
    name: str
    identify: Callable
    read: Callable
    list_spectra: Callable | None
    priority: int
    order: int


_FORMATS: dict[str, Format] = {}
#: format name -> reader(path) -> (wavelength, flux, meta) of a one-spectrum file (see the module docstring)
READERS: dict[str, Callable] = {}


def register(name: str, identify: Callable, read: Callable, list_spectra: Callable | None = None, priority: int = 0) -> None:
    """Add a spectrum format (see the module docstring); ConfigError when `name` is taken (unregister it first)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a format name must be a non-empty string, got {name!r}")
    if name in _FORMATS:
        raise ConfigError(f"spectrum format {name!r} is registered already; call unregister({name!r}) first to replace it")
    for what, fn in (("identify", identify), ("read", read)):
        if not callable(fn):
            raise ConfigError(f"register({name!r}): {what} must be callable, got {fn!r}")
    _FORMATS[name] = Format(name, identify, read, list_spectra, int(priority), len(_FORMATS))
    READERS[name] = _one_spectrum_reader(name)


def unregister(name: str) -> None:
    if name not in _FORMATS:
        raise ConfigError(f"spectrum format {name!r} is not registered; the formats are {formats()}")
    del _FORMATS[name]
    READERS.pop(name, None)


def formats() -> list[str]:
    """The registered format names in the order `identify` tries them."""
    return [f.name for f in sorted(_FORMATS.values(), key=lambda f: (-f.priority, f.order))]


def _format(name: str) -> Format:
    if name not in _FORMATS:
        raise ConfigError(f"format must be one of {formats()}, got {name!r}")
    return _FORMATS[name]


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise GridError(f"spectrum file {path} does not exist" if not path.exists() else f"spectrum file {path} is not a file")
    return path


def identify(path) -> str:
    """The name of the format of `path`, by its content (FITS keywords, EXTNAMEs, columns), then by its suffix
    for the text formats. GridError for a missing file or a non-FITS file with a FITS name; ConfigError when
    no format claims it."""
    path = _existing(path)
    for name in formats():
        if _FORMATS[name].identify(path):
            return name
    if has_fits_name(path) and not is_fits(path):
        raise GridError(f"{path} has a FITS name but is not a FITS file: it begins with {head_bytes(path)!r}, not the FITS card 'SIMPLE  ='")
    ext = suffix(path, SPECTRUM_FORMATS)
    raise ConfigError(f"cannot tell the format of {path}: it is not FITS and its extension {ext!r} is none of "
                      f"{', '.join(sorted(SPECTRUM_FORMATS))}; pass format= one of {formats()}")


def read_spectra(path, format: str | None = None, which=None) -> list[Spectrum]:
    """Every spectrum of `path` (or those at the indices `which`: an int or a sequence), as Spectrum objects.
    `format`: a registered name; default `identify(path)`."""
    path = _existing(path)
    fmt = _format(format) if format is not None else _FORMATS[identify(path)]
    return fmt.read(path, which)


def list_spectra(path, format: str | None = None) -> list[dict]:
    """The meta of every spectrum of `path`, with 'medium', 'n_pixels', 'wavelength_min' and 'wavelength_max' [A]
    (None where the headers do not say), without reading the flux arrays where the format can (FITS formats:
    headers and metadata tables only; a multi-spectrum file: FIBMETATAB, not SPECTAB's arrays)."""
    path = _existing(path)
    fmt = _format(format) if format is not None else _FORMATS[identify(path)]
    if fmt.list_spectra is not None:
        return fmt.list_spectra(path)
    out = []
    for sp in fmt.read(path, None):
        out.append({**sp.meta, "medium": sp.medium, "n_pixels": sp.wavelength.size,
                    "wavelength_min": float(sp.wavelength[0]), "wavelength_max": float(sp.wavelength[-1])})
    return out


def _one_spectrum_reader(name: str) -> Callable:
    def reader(path):
        path = Path(path)
        spectra = _FORMATS[name].read(path, None)
        if len(spectra) != 1:
            raise GridError(f"{path} holds {len(spectra)} spectra; this reader returns one (read them with gridkit.io.read_spectra)")
        sp = spectra[0]
        meta = {k: v for k, v in sp.meta.items() if v is not None}  # what the file says (meta.get(key, default) works)
        return sp.wavelength, sp.masked_flux(), {**meta, "medium": sp.medium, **({"sigma": sp.sigma} if sp.sigma is not None else {})}

    reader.__name__ = reader.__qualname__ = f"read_{name.replace('-', '_')}_one"
    reader.__doc__ = f"(wavelength [A], flux with NaN where not good, meta) of a one-spectrum {name!r} file."
    return reader


def _by_suffix(name: str) -> Callable:
    def identify_by_suffix(path) -> bool:
        return SPECTRUM_FORMATS.get(suffix(path, SPECTRUM_FORMATS)) == name and not is_fits(path)

    return identify_by_suffix


# --- the built-in formats: the one place they are registered ----------------------------------------------------
register("4most-l1-multi", identify_l1_multi, read_l1_multi, list_l1_multi, priority=30)
register("4most-l1", identify_l1, read_l1, list_l1, priority=20)
register("eso-sdp", identify_eso_sdp, read_eso_sdp, list_eso_sdp, priority=10)
register("fits", is_fits, fits_spectra, priority=0)
register("text", _by_suffix("text"), text_spectra, priority=-10)
register("turbospectrum", _by_suffix("turbospectrum"), turbospectrum_spectra, priority=-10)
# the generic readers as they are (repeated wavelengths and all), as gridkit.observed has always read them
READERS.update(turbospectrum=read_spec, text=read_text, fits=read_fits)

__all__ = ["register", "unregister", "formats", "identify", "read_spectra", "list_spectra", "READERS", "Format"]
