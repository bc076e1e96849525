"""End to end on 4MOST L1 files (benchmarks/observed_e2e.py): the test split of a model's cube written as
multi-spectrum files with RVs, continua, masks and noise, prepared by fourmostify and inferred, scatters no more
than 1.2x as much as the same stars fed directly (mock survey). Minutes: marked slow (make test-slow)."""
import pytest


@pytest.mark.slow
def test_l1_files_of_the_test_split_infer_like_the_mock_survey(tmp_path):
    from benchmarks.observed_e2e import run

    result = run(n_models=600, out=tmp_path)
    assert abs(result["rv_error_bias"]) < 0.2 and result["rv_error_sigma"] < 0.6
    for lab, r in result["labels"].items():
        assert r["ratio"] < 1.2, (lab, r)
