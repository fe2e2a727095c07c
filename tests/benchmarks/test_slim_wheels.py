"""benchmarks/slim_wheels.py: the dropped files leave the wheel and its RECORD; the rest stays
byte for byte, and a wheel nobody slims is left alone."""

from __future__ import annotations

import zipfile

from benchmarks.slim_wheels import main


def _wheel(path, files: dict[str, bytes]) -> None:
    record = "".join(f"{name},sha256=x,{len(data)}\n" for name, data in files.items())
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{path.name.split('-')[0]}-1.0.dist-info/RECORD", record)


def test_slimming_drops_the_listed_parts_and_their_record_lines(tmp_path):
    _wheel(tmp_path / "bitsandbytes-1.0-py3-none-any.whl", {
        "bitsandbytes/__init__.py": b"pass",
        "bitsandbytes/libbitsandbytes_cuda130.so": b"keep",
        "bitsandbytes/libbitsandbytes_cuda128.so": b"x" * 1000,
        "bitsandbytes/libbitsandbytes_rocm72.so": b"x" * 1000,
    })
    _wheel(tmp_path / "unsloth-1.0-py3-none-any.whl", {
        "unsloth/__init__.py": b"pass", "studio/app.js": b"x" * 1000})
    _wheel(tmp_path / "trl-1.0-py3-none-any.whl", {"trl/studio/x.py": b"pass"})
    before = (tmp_path / "trl-1.0-py3-none-any.whl").read_bytes()

    main(tmp_path)

    with zipfile.ZipFile(tmp_path / "bitsandbytes-1.0-py3-none-any.whl") as wheel:
        assert sorted(wheel.namelist()) == [
            "bitsandbytes-1.0.dist-info/RECORD", "bitsandbytes/__init__.py",
            "bitsandbytes/libbitsandbytes_cuda130.so"]
        assert wheel.read("bitsandbytes/libbitsandbytes_cuda130.so") == b"keep"
        record = wheel.read("bitsandbytes-1.0.dist-info/RECORD").decode()
        assert "cuda128" not in record and "rocm" not in record and "cuda130" in record
    with zipfile.ZipFile(tmp_path / "unsloth-1.0-py3-none-any.whl") as wheel:
        assert sorted(wheel.namelist()) == ["unsloth-1.0.dist-info/RECORD", "unsloth/__init__.py"]
    assert (tmp_path / "trl-1.0-py3-none-any.whl").read_bytes() == before
    assert not list(tmp_path.glob("*.slim"))
