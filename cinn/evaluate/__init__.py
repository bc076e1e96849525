"""Evaluation of trained cINNs (docs/evaluate.md): `metrics` (accuracy and calibration, pure numpy), `report`
(`evaluate`: tables, figures, summary), `saliency` (Figs. A.4, A.5), `ppc` (posterior predictive check, Fig. 7)
and `bias` (Eq. B.1 calibration against reference stars, stored for `gridkit catalog calibrate`)."""
