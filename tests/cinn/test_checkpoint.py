"""Model directories: a save/load round trip gives identical samples, nothing is pickled, and a missing or corrupt
file is a clear ModelDirError naming the file."""
import json
import shutil

import numpy as np
import pytest

import cinn
from cinn import checkpoint as ck


@pytest.fixture()
def model_copy(trained, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(trained, dst)
    return dst


@pytest.fixture(scope="module")
def spectra(test_spectra):
    flux, snr, _ = test_spectra
    return flux.values[:4], snr[:4]


def test_save_load_round_trip_gives_identical_samples(trained, tmp_path, spectra):
    flux, snr = spectra
    post = cinn.load(trained)
    before = post.sample(flux, snr, n=64, seed=9)
    meta, state, extras = ck.read_model(trained)
    # write the loaded model again (its in-memory weights, not a file copy) and load that
    meta = {k: v for k, v in meta.items() if k not in ("files", "model_id", "format", "format_version")}
    model_id = ck.write_model(tmp_path / "again", post.model.state_dict(), wavelength=extras["wavelength"],
                              flux_mean=extras["flux_mean"], flux_std=extras["flux_std"], meta=meta)
    assert model_id == post.model_id  # the weights' bytes are identical
    again = cinn.load(tmp_path / "again")
    np.testing.assert_array_equal(again.sample(flux, snr, n=64, seed=9), before)
    np.testing.assert_array_equal(again.wavelength, post.wavelength)
    assert again.bounds.tolist() == post.bounds.tolist()


def test_format_1_model_dir_reads_as_the_same_network(model_copy, spectra):
    """Format 1 counted a subnet's hidden layers in `subnet_layers`; such a directory loads as the same network."""
    flux, snr = spectra
    before = cinn.load(model_copy).sample(flux, snr, n=32, seed=3)
    meta = json.loads((model_copy / "model.json").read_text())
    assert meta["format_version"] == ck.FORMAT_VERSION == 2
    meta["format_version"] = 1
    meta["config"]["subnet_layers"] -= 1
    (model_copy / "model.json").write_text(json.dumps(meta))
    old = cinn.load(model_copy)
    assert old.model.config.subnet_layers == meta["config"]["subnet_layers"] + 1
    np.testing.assert_array_equal(old.sample(flux, snr, n=32, seed=3), before)


def test_no_pickles_only_safetensors_json_csv(trained):
    for path in trained.rglob("*"):
        if path.is_file():
            assert path.suffix in (".json", ".safetensors", ".csv"), path
            assert not path.read_bytes()[:1] == b"\x80", f"{path} looks like a pickle"
    meta = json.loads((trained / "model.json").read_text())
    for key in ("config", "label_names", "label_transform", "input_scaler", "bounds", "instrument", "training_data", "versions"):
        assert key in meta
    assert len(meta["training_data"]["hash"]) == 64


def test_missing_files_are_clear_errors(model_copy, tmp_path):
    with pytest.raises(ck.ModelDirError, match="does not exist"):
        cinn.load(tmp_path / "nowhere")
    (model_copy / "model.safetensors").unlink()
    with pytest.raises(ck.ModelDirError, match="model.safetensors is missing"):
        cinn.load(model_copy)
    (model_copy / "model.json").unlink()
    with pytest.raises(ck.ModelDirError, match="model.json is missing"):
        cinn.load(model_copy)


def test_corrupt_weights_are_detected(model_copy):
    path = model_copy / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(ck.ModelDirError, match="corrupt.*sha256"):
        cinn.load(model_copy)
    path.write_bytes(bytes(data[:100]))  # truncated
    with pytest.raises(ck.ModelDirError, match="model.safetensors"):
        cinn.load(model_copy)


def test_corrupt_or_inconsistent_json_is_detected(model_copy):
    path = model_copy / "model.json"
    good = path.read_text()
    path.write_text(good[: len(good) // 2])
    with pytest.raises(ck.ModelDirError, match="model.json is corrupt"):
        cinn.load(model_copy)
    meta = json.loads(good)
    del meta["bounds"]
    path.write_text(json.dumps(meta))
    with pytest.raises(ck.ModelDirError, match="'bounds' is missing"):
        cinn.load(model_copy)
    meta = json.loads(good)
    meta["config"]["subnet_width"] += 1  # weights no longer match the architecture
    path.write_text(json.dumps(meta))
    with pytest.raises(ck.ModelDirError, match="does not match the config"):
        cinn.load(model_copy)
    meta = json.loads(good)
    meta["format"] = "something-else"
    path.write_text(json.dumps(meta))
    with pytest.raises(ck.ModelDirError, match="not a gridkit cINN model"):
        cinn.load(model_copy)


def test_resume_from_a_corrupt_checkpoint_is_refused(model_copy, toy_cube):
    last = model_copy / ck.CKPT_DIR / ck.LAST
    last.write_bytes(last.read_bytes()[:-10])
    with pytest.raises(ck.ModelDirError, match="last.safetensors"):
        cinn.train(toy_cube, model_copy, resume=True, progress=False)


def test_tensors_are_written_without_a_second_copy_and_shared_ones_still_are(tmp_path):
    """Writing a checkpoint does not copy what safetensors can take as it is: the published network's weights and
    Adam state (1.1 GB) were copied whole for every checkpoint, the training process's peak memory. Views and tensors
    sharing memory are copied (safetensors refuses them) and round-trip. Peak RSS measured in a fresh process."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import resource, torch
        from cinn.checkpoint import save_tensors, read_tensors
        big = {{f"w{{i}}": torch.randn(25_000_000) for i in range(4)}}  # 400 MB
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        digest = save_tensors(r"{tmp_path / 'big.safetensors'}", big)
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(grew // 1024)
        base = torch.arange(12.0)
        shared = {{"a": base, "view": base[2:5], "again": base, "t": base.reshape(3, 4).t()}}
        d2 = save_tensors(r"{tmp_path / 'shared.safetensors'}", shared)
        back, _ = read_tensors(r"{tmp_path / 'shared.safetensors'}", d2, "test")
        assert all(torch.equal(back[k], shared[k]) for k in shared), back
        assert base.data_ptr() == shared["a"].data_ptr()  # the caller's tensors are untouched
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grew_mb = int(out.stdout.split()[-1])
    assert grew_mb < 150, f"peak RSS grew by {grew_mb} MB while writing 400 MB of tensors"
