import json

import pytest
import torch

from fdrl_core import FDRLConfig, LabelSet
from fdrl_core.checkpoint import (
    CheckpointError,
    checkpoint_hash,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from fdrl_core.labels import IEMOCAP4
from fdrl_core.model import FDRL
from tests.conftest import random_batch


def test_config_json_round_trip():
    cfg = FDRLConfig(d_model=128, align_variant="B", modalities=("speech",), align_weight=0.0,
                     labels=LabelSet("x", ("a", "b", "c"), {"aa": "a"}))
    again = FDRLConfig.from_json(cfg.to_json())
    assert again == cfg and again.num_classes == 3 and again.labels.map("aa") == "a"


@pytest.mark.parametrize("bad", [dict(align_variant="C"), dict(modalities=("video",)), dict(d_model=130),
                                 dict(align_weight=-1.0), dict(encoder="lstm")])
def test_config_rejects_bad_values_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="FDRLConfig"):
        FDRLConfig(**bad)


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="unknown keys"):
        FDRLConfig.from_dict({**FDRLConfig().to_dict(), "wobble": 1})


def test_iemocap_label_set_merges_excited_into_happy():
    assert IEMOCAP4.map("exc") == "happy" and IEMOCAP4.map("fru") is None
    assert IEMOCAP4.index("ang") == IEMOCAP4.classes.index("angry")


def test_checkpoint_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    m = FDRL(FDRLConfig(d_model=64, heads=2, encoder="transformer", align_variant="B")).eval()
    save_checkpoint(m, tmp_path / "ck", meta={"note": "test"})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "labels.json", "meta.json",
                                                                   "model.safetensors"]
    m2 = load_checkpoint(tmp_path / "ck")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    s, ms, t, mt, _ = random_batch()
    with torch.no_grad():
        assert torch.equal(m(s, ms, t, mt).logits, m2(s, ms, t, mt).logits)
    assert m2.cfg == m.cfg
    assert len(checkpoint_hash(tmp_path / "ck")) == 64


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_config(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        read_config(tmp_path / "empty")
    m = FDRL(FDRLConfig(d_model=64, heads=2))
    ck = save_checkpoint(m, tmp_path / "ck")
    (ck / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(ck)
    ck2 = save_checkpoint(m, tmp_path / "ck2")
    cfg = json.loads((ck2 / "config.json").read_text())
    cfg["d_model"] = 128
    (ck2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(ck2)
