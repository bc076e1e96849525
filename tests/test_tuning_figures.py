"""benchmarks/tuning_figures.py: the table ranks a study's trials by their best validation NLL, and the figure is
written (the study's figures in docs/science.md come from it)."""
import csv

from benchmarks import tuning_figures


def test_tuning_table_ranks_trials_and_the_figure_is_written(tmp_path):
    tune = tmp_path / "tune"
    rows = [(0, "COMPLETE", -0.4, 5, 128, 1e-3), (1, "PRUNED", 0.2, 1, 64, 3e-3), (2, "COMPLETE", -0.9, 5, 256, 5e-4),
            (3, "FAIL", "", 0, 64, 1e-4)]
    (tune / "trials").mkdir(parents=True)
    with open(tune / "trials.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", "value", "epochs_reported", "flux_components", "lr"])
        w.writerows(rows)
    for number, _, value, epochs, *_ in rows[:3]:
        (tune / "trials" / f"{number:04d}").mkdir()
        with open(tune / "trials" / f"{number:04d}" / "log.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["epoch", "val_nll"])
            w.writerow([0, 1.0])
            w.writerows([(e, float(value) + (epochs - e) * 0.1) for e in range(1, epochs + 1)])
    got, params = tuning_figures.read(tune)
    assert params == ["flux_components", "lr"] and [len(r["curve"]) for r in got[:3]] == [5, 1, 5]
    lines = tuning_figures.table(got, params).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["2", "0", "1"]  # best first; the failed trial has no value
    assert "| 2 | complete | 5 | -0.900 | 256 | 0.0005 |" in lines
    out = tuning_figures.plot(got, params, tmp_path / "fig.png")
    assert out.stat().st_size > 10_000
