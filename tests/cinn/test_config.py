"""CINNConfig: the published defaults, JSON/YAML loading, unknown keys and bad values refused."""
import json

import pytest

from cinn.config import CINNConfig, as_config
from gridkit.errors import ConfigError
from gridkit.schema import LABEL_NAMES


def test_defaults_are_the_published_architecture_and_optimiser():
    c = CINNConfig()
    assert (c.n_blocks, c.subnet_width, c.subnet_layers, c.feature_layers, c.n_features, c.clamp) == (16, 512, 3, (2048, 1024, 512), 256, 1.9)
    assert (c.lr, c.betas, c.weight_decay, c.lr_decay, c.batches_per_epoch, c.batch_size) == (2.299e-3, (0.8, 0.8), 2.34e-7, 0.95, 128, 1024)
    assert c.split == (0.75, 0.20, 0.05) and c.reverse_noise == 1e-5 and c.labels == LABEL_NAMES
    assert c.log_labels == ("teff", "vbroad")


def test_json_and_yaml_round_trip(tmp_path):
    c = CINNConfig(n_blocks=4, feature_layers=(64, 32))
    (tmp_path / "c.json").write_text(json.dumps(c.to_dict()))
    (tmp_path / "c.yaml").write_text("n_blocks: 4\nfeature_layers: [64, 32]\n")
    assert CINNConfig.from_file(tmp_path / "c.json") == c
    assert CINNConfig.from_file(tmp_path / "c.yaml") == c
    assert as_config({"n_blocks": 4, "feature_layers": [64, 32]}) == c


def test_unknown_key_is_refused_with_its_name(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"n_blokcs": 4}))
    with pytest.raises(ConfigError, match="n_blokcs"):
        CINNConfig.from_file(tmp_path / "c.json")


@pytest.mark.parametrize("bad", [{"n_blocks": 0}, {"clamp": -1.0}, {"split": (0.5, 0.2, 0.2)}, {"loader": "magic"},
                                 {"worker_start": "fork"}, {"log_labels": ("teff", "nope")}, {"snr_range": (100, 10)},
                                 {"subnet_layers": 1}])
def test_bad_values_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        CINNConfig(**bad)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        CINNConfig.from_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        CINNConfig.from_file(tmp_path / "bad.json")
