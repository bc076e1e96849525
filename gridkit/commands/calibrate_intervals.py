"""`gridkit calibrate-intervals MODEL_DIR CUBE`: fit the model's interval calibration on held-out spectra (cinn.calibration)."""
from __future__ import annotations

from ._common import floats


def register(sub):
    p = sub.add_parser(
        "calibrate-intervals",
        help="make a model's credible intervals calibrated: fit a per-label, per-S/N monotone map of its posterior on held-out spectra",
        description="Fit the interval calibration of MODEL_DIR on the spectra of its validation split (by default) in CUBE, a noisy cube "
                    "flux(model, snr, wavelength) of the training grid's models: per label and S/N, the factor around the posterior median "
                    "that makes the central 68 %% interval hold the truth 68 %% of the time, then the quantile remap that makes the truths' "
                    "PIT uniform (every central interval at its level). Stored in MODEL_DIR/calibration.json; "
                    "`gridkit infer` and `gridkit evaluate` apply it (--no-calibration: not). See docs/cinn.md.",
    )
    p.add_argument("model_dir")
    p.add_argument("cube")
    p.add_argument("--split", choices=("validation", "test", "train"), default="validation", help="models to fit on (default validation)")
    p.add_argument("--samples", type=int, default=1024, help="posterior draws per spectrum (default 1024)")
    p.add_argument("--snr", type=floats, default=None, help="S/N values of the cube to use (default all)")
    p.add_argument("--max-spectra", type=int, default=None, help="use the first N models of the split only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace the model's existing calibration")
    p.set_defaults(func=_run)


def _run(args):
    from cinn.evaluate.report import fit_interval_calibration

    cal = fit_interval_calibration(args.model_dir, args.cube, split=args.split, samples=args.samples, seed=args.seed, snr=args.snr,
                                   max_spectra=args.max_spectra, overwrite=args.overwrite)
    print(f"interval calibration of model {cal.model_id} from {cal.source}: scale factor of the 68 % interval per label and S/N")
    print("label     " + "".join(f"{f'S/N {s:g}':>10s}" for s in cal.snr))
    for j, lab in enumerate(cal.labels):
        print(f"{lab:9s} " + "".join(f"{v:10.3f}" for v in cal.scale[:, j]))
    if cal.pit is not None:
        print("then the quantile remap: the scaled posterior's level that becomes the median (0.5: no shift)")
        mid = cal.levels(cal.snr, [0.5])[:, :, 0]  # (n_snr, n_labels)
        for j, lab in enumerate(cal.labels):
            print(f"{lab:9s} " + "".join(f"{v:10.3f}" for v in mid[:, j]))
    print(f"written to {args.model_dir}/calibration.json")
    return 0
