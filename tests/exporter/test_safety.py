"""Pickles are refused by name and by content; safetensors headers are checked, not trusted."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from services.common.errors import InvalidArgument
from services.exporter import safety


def _adapter_folder(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    save_file({"a": torch.ones(2, 3)}, folder / "adapter_model.safetensors")
    return folder


@pytest.mark.parametrize("name", ["adapter_model.bin", "optimizer.pt", "rng_state.pth",
                                  "training_args.pkl", "sub/dir/model.ckpt"])
def test_pickle_suffixes_are_refused_anywhere(tmp_path, name):
    folder = _adapter_folder(tmp_path)
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not even a pickle")  # refused by name, never opened
    with pytest.raises(InvalidArgument) as raised:
        safety.refuse_pickles(folder, "adapter")
    assert name in str(raised.value) and "pickle" in str(raised.value)
    assert "safetensors" in str(raised.value)


def test_pickles_under_innocent_names_are_refused(tmp_path):
    folder = _adapter_folder(tmp_path)
    (folder / "weights.dat").write_bytes(pickle.dumps({"x": 1}, protocol=4))
    with zipfile.ZipFile(folder / "archive", "w") as z:  # what torch.save writes
        z.writestr("data.pkl", b"")
    assert safety.unsafe_files(folder) == ["archive", "weights.dat"]


def test_clean_folder_passes(tmp_path):
    folder = _adapter_folder(tmp_path)
    (folder / "README.md").write_text("# adapter\n")
    safety.refuse_pickles(folder, "adapter")
    header = safety.safetensors_header(folder / "adapter_model.safetensors", "adapter")
    assert header["a"]["shape"] == [2, 3]


def _raw_safetensors(path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize(
    ("header", "data", "problem"),
    [
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "truncated"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "does not fit"),
        ({"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype"),
        ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "data_offsets"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8, "gap"),
    ],
)
def test_malformed_safetensors_are_invalid(tmp_path, header, data, problem):
    path = tmp_path / "x.safetensors"
    _raw_safetensors(path, header, data)
    with pytest.raises(InvalidArgument) as raised:
        safety.safetensors_header(path, "adapter file x.safetensors")
    assert "not a valid safetensors file" in str(raised.value)
    assert problem in str(raised.value)


@pytest.mark.parametrize("content", [b"", b"\x01\x02", b"\xff" * 64, b"\x05\0\0\0\0\0\0\0{bad}"])
def test_garbage_is_invalid(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(InvalidArgument):
        safety.safetensors_header(path, "x")
