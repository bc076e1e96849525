"""Figure helpers shared by the evaluation's figures (report, saliency, posterior predictive check).

matplotlib is imported on first use, with the non-interactive Agg backend: the report is written on machines
without a display, and importing `cinn.evaluate` must not cost matplotlib's start-up.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gridkit.schema import label_info

#: resolution of every PNG the evaluation writes
DPI = 110


def pyplot():
    """matplotlib.pyplot on the Agg backend (switched to only when another backend is active)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def panel_grid(n: int, width: float = 3.0, height: float = 2.4, ncols: int | None = None):
    """(figure, n axes) on a grid of panels `width` x `height` inches each (one panel per label); spare cells hidden."""
    plt = pyplot()
    ncols = ncols or min(n, 4 if n > 6 else 3 if n > 2 else n)
    nrows = math.ceil(n / ncols)
    # fixed spacing rather than constrained layout: the same look, several times faster for 13 panels
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.7), squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.06, top=1 - 0.8 / (height * nrows + 0.7), wspace=0.4, hspace=0.6)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:n]


def axis_label(label: str) -> str:
    """`teff [K]`: a label's name with its unit (none for dimensionless labels)."""
    info = label_info(label)
    unit = "" if info.units in ("1", "") else f" [{info.units}]"
    return f"{label}{unit}"


def snr_axis(ax, snr=None) -> None:
    """Log S/N axis with plain tick labels: at the S/N values themselves when there are few, else at
    1, 2, 5 x 10^k (never overlapping minor labels)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    if snr is not None and 0 < len(snr) <= 6:
        ax.xaxis.set_major_locator(FixedLocator(np.asarray(snr, dtype=float)))
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.08)


def save_figure(fig, path) -> Path:
    """Write `fig` as PNG to `path` (its folder made when missing, e.g. `gridkit show --out figs/star.png`) and close it
    (a report draws dozens: open figures would pile up)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    finally:
        pyplot().close(fig)
    return path


__all__ = ["DPI", "pyplot", "panel_grid", "axis_label", "snr_axis", "save_figure"]
