"""`gridkit ensemble MODEL_DIR MODEL_DIR [...] --out DIR`: mix trained networks into one model (cinn.ensemble)."""
from __future__ import annotations


def register(sub):
    p = sub.add_parser(
        "ensemble",
        help="mix trained networks of one training set into an ensemble used like one model (infer, evaluate, calibrate-intervals, show)",
        description="Write the ensemble directory --out of the model directories given (trained on the same data and split with the "
                    "same label transform, e.g. other seeds or architectures): its posterior is the equal-weight mixture of theirs, "
                    "each member making its share of the draws, every draw's density the mixture's. The directory refers to the "
                    "members (relative paths, model ids, weight sha256); fit its interval calibration with "
                    "`gridkit calibrate-intervals`. See docs/cinn.md.",
    )
    p.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR", help="two or more trained model directories, in draw order")
    p.add_argument("--out", required=True, help="the ensemble directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ensemble directory (staged: the old one stays until the new one is whole)")
    p.set_defaults(func=_run)


def _run(args):
    import json

    from cinn.ensemble import ENSEMBLE_FILE, write_ensemble

    out = write_ensemble(args.model_dirs, args.out, overwrite=args.overwrite)
    doc = json.loads((out / ENSEMBLE_FILE).read_text())  # what was written (the members were loaded and checked once)
    print(f"ensemble {doc['model_id']} of {len(doc['members'])} networks: " + ", ".join(m["model_id"] for m in doc["members"]))
    print(f"written to {out}; fit its interval calibration with: gridkit calibrate-intervals {out} CUBE")
    return 0
