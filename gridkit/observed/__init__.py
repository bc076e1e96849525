"""Observed spectra to the instrument: read, check, convolve, rebin, report missing pixels, write a survey.

- `fourmostify(ds, R_in)`      observed spectra flux(star, wavelength) to the instrument's pixels, lazily
                               (options in `FourmostifyConfig`); missing pixels stay NaN and are counted
- `fourmostify_store(paths, out, ...)`, `fourmostify_file(path, ...)`: files to a survey store (the CLI's entry)
- `spectrum_dataset`, `missing_report`, `missing_ranges`: one spectrum as a dataset; its missing pixels
- `der_snr`, `estimate_snr`: S/N from the flux itself when no errors are given
"""
from __future__ import annotations

from .pipeline import FourmostifyConfig, fourmostify
from .jobs import fourmostify_file, fourmostify_store, plan, read_star
from .prepare import PrepareOptions, check_normalisation, normalisation_record, prepare_star
from .snr import MAX_ESTIMATED_SNR, der_snr, estimate_snr
from .spectrum import format_ranges, missing_ranges, missing_report, spectrum_dataset

__all__ = ["fourmostify", "FourmostifyConfig", "fourmostify_file", "fourmostify_store", "plan", "read_star", "PrepareOptions",
           "prepare_star", "check_normalisation", "normalisation_record", "spectrum_dataset", "missing_report",
           "missing_ranges", "format_ranges", "der_snr", "estimate_snr", "MAX_ESTIMATED_SNR"]
