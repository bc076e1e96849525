"""Evaluation of trained cINNs (docs/evaluate.md): `metrics` (accuracy and calibration, pure numpy), `report`
(`evaluate`: tables, figures, summary), `saliency` (Figs. A.4, A.5), `ppc` (posterior predictive check, Fig. 7),
`star` (one catalog star: its draws, a corner plot, its predictive spectra; `gridkit show`) and `plotting` (the figure
helpers they share). They use only the public `cinn.posterior.Posterior` API. The
Eq. B.1 bias calibration against reference stars is a catalog operation: `catalogs.bias`."""
