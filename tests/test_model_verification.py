"""Model files are verified on load (issue 18 point 5): the CRC of every zip member,
finite stored weights, and a bounded feature spec before any plan is built; each
refused with a one-line message naming the file."""

from __future__ import annotations

import struct
import time
import zipfile

import pytest
import torch
from toyjets import toy_jets, write_jetclass

from jetace.cli import main
from jetace.errors import ModelFileError
from jetace.model_file import SPEC_LIMITS, load_model
from jetace.training import train_model

SPEC = {"family": "bip", "order": 2, "degree": 3, "max_particles": 16}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify")
    sig = write_jetclass(d / "sig.root", toy_jets(40, seed=1, n_prongs=3),
                         {"label_Tbqq": True, "label_QCD": False})
    bkg = write_jetclass(d / "bkg.root", toy_jets(40, seed=2),
                         {"label_Tbqq": False, "label_QCD": True})
    model, _ = train_model(signal=str(sig), background=str(bkg), spec=SPEC, device="cpu",
                           progress=False, val_fraction=0.0)
    return {"model": model.save(d / "good.jetace"), "sig": sig, "dir": d}


def _largest_tensor(path):
    """(offset, size) of the bytes of the largest stored tensor in the archive."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                   info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def _rewrite(saved, name, change):
    data = torch.load(saved["model"], weights_only=True)
    change(data)
    path = saved["dir"] / name
    torch.save(data, path)
    return path


def test_intact_model_loads(saved):
    assert load_model(saved["model"]).num_features > 0


def test_flipped_byte_in_a_tensor_fails_the_crc(saved, tmp_path, capsys):
    start, size = _largest_tensor(saved["model"])
    raw = bytearray(saved["model"].read_bytes())
    raw[start + size // 2] ^= 0x40
    bad = tmp_path / "flipped.jetace"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=r"flipped.jetace is corrupted: member .*data/.* "
                                             "fails its CRC check"):
        load_model(bad)
    out = tmp_path / "scores.parquet"
    assert main(["predict", str(bad), str(saved["sig"]), "-o", str(out), "--quiet"]) == 1
    assert "fails its CRC check" in capsys.readouterr().err and not out.exists()
    truncated = tmp_path / "truncated.jetace"
    truncated.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(ModelFileError, match="truncated.jetace"):
        load_model(truncated)


def _first_float_tensor(state):
    if isinstance(state, torch.Tensor) and state.is_floating_point():
        return state
    items = state.values() if isinstance(state, dict) else \
        state if isinstance(state, list) else ()
    for item in items:
        found = _first_float_tensor(item)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(saved, value):
    path = _rewrite(saved, "nan.jetace",
                    lambda d: _first_float_tensor(d["tagger_state"]).view(-1).__setitem__(
                        0, value))
    with pytest.raises(ModelFileError, match=r"nan.jetace: stored weights tagger_state\..* "
                                             "hold NaN or infinite values"):
        load_model(path)


@pytest.mark.parametrize("change,message", [
    ({"order": 12, "degree": 40}, "order=12 exceeds the limit"),
    ({"order": 6, "degree": 14}, r"order 6 x degree 14 = 84 exceeds"),
    ({"lmax": SPEC_LIMITS["lmax"] + 1}, "lmax=13 exceeds"),
    ({"max_particles": -3}, "max_particles=-3 is not a non-negative integer"),
    ({"degree": "7"}, "degree='7' is not"),
])
def test_hostile_feature_specs_are_refused_before_any_plan(saved, change, message):
    path = _rewrite(saved, "spec.jetace", lambda d: d["features"].update(change))
    t0 = time.perf_counter()
    with pytest.raises(ModelFileError, match=message):
        load_model(path)
    assert time.perf_counter() - t0 < 5  # no plan was built


def test_feature_count_and_version_checks(saved):
    path = _rewrite(saved, "count.jetace", lambda d: d.update(num_features=10**9))
    with pytest.raises(ModelFileError, match="1000000000 features is outside"):
        load_model(path)
    path = _rewrite(saved, "v.jetace", lambda d: d.update(format_version="1"))
    with pytest.raises(ModelFileError, match=r"invalid model format version '1'"):
        load_model(path)
    path = _rewrite(saved, "v2.jetace", lambda d: d.update(format_version=2))
    with pytest.raises(ModelFileError, match="version 2, but jetace .* reads only version 1"):
        load_model(path)
