"""padrec.io (atomic writes, JSON with clear errors), padrec.fingerprint and padrec.devices."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from padrec.data.cache import fingerprint as dataset_fingerprint
from padrec.devices import resolve_device
from padrec.fingerprint import digest, dir_fingerprint, file_fingerprint, file_sha256, fingerprint, sha256_hex
from padrec.io import FileFormatError, atomic_path, read_json, write_bytes, write_json, write_text


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- atomic writes


def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.is_file() and not target.exists()
        assert tmp.name.startswith(".out.bin.") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and leftovers(target.parent) == []


def test_atomic_path_temporary_names_differ(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x") as a, atomic_path(tmp_path / "x") as b:
        assert a != b
        b.write_text("second")
    assert (tmp_path / "x").read_text() == ""  # a (empty) was renamed last
    assert leftovers(tmp_path) == []


def test_failed_write_keeps_old_target_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_json(target, {"epoch": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"epoch": 2, "hist')  # half a file...
            raise RuntimeError("disk full")  # ...then the writer fails
    assert read_json(target) == {"epoch": 1}
    assert leftovers(tmp_path) == []


def test_interrupt_leaves_no_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert not target.exists() and leftovers(tmp_path) == []


def test_write_json_fails_before_touching_target(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_text(target, "old\n")

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("cannot be shown")

    with pytest.raises(ValueError, match="cannot be shown"):
        write_json(target, {"x": Unprintable()})
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_write_json_format(tmp_path: Path) -> None:
    """indent=2, keys in given order, trailing newline, default=str (checkpoint.write_json's format)."""
    path = write_json(tmp_path / "a" / "b.json", {"z": 1, "a": [1, 2], "p": Path("/x/y")})
    assert path == tmp_path / "a" / "b.json"
    assert path.read_text(encoding="utf-8") == '{\n  "z": 1,\n  "a": [\n    1,\n    2\n  ],\n  "p": "/x/y"\n}\n'
    expected = json.dumps({"z": 1, "a": [1, 2], "p": "/x/y"}, indent=2, sort_keys=False, default=str) + "\n"
    assert path.read_text(encoding="utf-8") == expected


def test_write_text_and_bytes(tmp_path: Path) -> None:
    assert write_text(tmp_path / "t.txt", "café\n").read_bytes() == "café\n".encode()
    assert write_bytes(tmp_path / "d" / "b.bin", b"\x00\xff").read_bytes() == b"\x00\xff"
    assert leftovers(tmp_path) == []


def test_written_files_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "p.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# --------------------------------------------------------------------------- read_json


def test_read_json_round_trip_and_expect(tmp_path: Path) -> None:
    write_json(tmp_path / "ok.json", {"a": [1, 2]})
    assert read_json(tmp_path / "ok.json") == {"a": [1, 2]}
    assert read_json(tmp_path / "ok.json", expect=dict) == {"a": [1, 2]}
    with pytest.raises(FileFormatError, match=r"ok\.json: expected a JSON list, got a JSON dict"):
        read_json(tmp_path / "ok.json", expect=list)


def test_read_json_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "x" / "model.json"
    with pytest.raises(FileNotFoundError) as info:
        read_json(missing)
    assert str(info.value).startswith(f"{missing}: file not found")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b'{"a": 1,\n "b": [1, 2', r"not valid JSON \(line 2, column \d+: .*\); truncated or damaged\?"),
        (b'{"a": 1}\n{"b": 2}', r"not valid JSON \(line 2, column 1: Extra data\)"),
        (b"{'a': 1}", r"not valid JSON \(line 1, column 2: Expecting property name"),
        (b"", r"empty file; expected JSON"),
        (b"  \n", r"empty file; expected JSON"),
        (b'{"a": "\xff"}', r"not UTF-8 text \(byte 7\); expected a JSON file"),
    ],
)
def test_read_json_bad_content_names_file_and_problem(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=problem) as info:
        read_json(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.path == path and isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- fingerprints


@pytest.mark.parametrize(
    "parts, expected",
    [
        (("a",), "ac8d8342bbb2362d"),
        ((1, 2.5, None, [1, "x"]), "95b713fae6cb47c2"),
        (({"b": 1, "a": [1, 2]},), "3813f9409eb0095b"),
        ((np.arange(6, dtype=np.int64).reshape(2, 3),), "f190072c5052f4f4"),
        ((np.arange(6, dtype=np.float32).reshape(2, 3).T,), "0c9d0bb54e4f5a01"),  # non-contiguous
        ((torch.arange(5, dtype=torch.float32),), "8deb90668ea3a684"),
        (({"lr": 3e-3, "seed": 42}, np.array([1, 2, 3], dtype=np.int64), torch.ones(2, 2)), "76474051876d44aa"),
        ((Path("/x/y"), {"k": Path("p")}), "5fd39483bc7426b7"),
    ],
)
def test_fingerprint_known_values(parts: tuple, expected: str) -> None:
    """Values of the trainer's fingerprint before it moved here: finished phases stay reusable."""
    assert fingerprint(*parts) == expected
    assert digest(*parts)[:16] == expected and len(digest(*parts)) == 64


def test_fingerprint_equal_for_equal_inputs_and_differs_otherwise() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert fingerprint({"x": 1, "y": 2}, a) == fingerprint({"y": 2, "x": 1}, a.copy())  # key order ignored
    assert fingerprint(torch.from_numpy(a)) == fingerprint(a)  # a tensor hashes like its array
    assert fingerprint({"x": 1}) != fingerprint({"x": 2})
    assert fingerprint(a) != fingerprint(a + 1)
    assert fingerprint("a", "b") != fingerprint("b", "a")
    assert fingerprint(1) != fingerprint("1")


def test_sha256_hex() -> None:
    assert sha256_hex("Milk") == hashlib.sha256(b"Milk").hexdigest()
    assert sha256_hex(b"Milk") == sha256_hex("Milk")


def test_file_hashes_known_values(tmp_path: Path) -> None:
    small = tmp_path / "f.bin"
    small.write_bytes(bytes(range(256)) * 10)
    assert file_sha256(small) == "e392378f849d67bbb1a7bbec84f1098ae3faa751049c009a850130ce6073d91a"
    assert file_fingerprint(small) == "7415c7fe118d71e6a3363febbebf08f0e9b95133e2bb47a33b2436982ac3b35f"
    big = tmp_path / "big.bin"
    data = bytearray(i % 251 for i in range(3 << 20))
    big.write_bytes(bytes(data))
    assert file_fingerprint(big) == "10e58a4e76c8a100ec425406a0b2b376be840771f3375f1db44222a684362a49"
    data[1 << 20] ^= 0xFF  # the middle of a large file is not read...
    big.write_bytes(bytes(data))
    assert file_fingerprint(big) == "10e58a4e76c8a100ec425406a0b2b376be840771f3375f1db44222a684362a49"
    assert file_sha256(big) != file_sha256(small)
    data[-1] ^= 0xFF  # ...its ends are
    big.write_bytes(bytes(data))
    assert file_fingerprint(big) != "10e58a4e76c8a100ec425406a0b2b376be840771f3375f1db44222a684362a49"


def test_dir_fingerprint_known_value_and_changes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"dim": 4}\n')
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("a\nb\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert dir_fingerprint(tmp_path) == "63537f475172fa2c"
    (tmp_path / "__pycache__" / "y.pyc").write_bytes(b"ignored")
    assert dir_fingerprint(tmp_path) == "63537f475172fa2c"
    (tmp_path / "tok" / "vocab.txt").write_text("a\nc\n")
    assert dir_fingerprint(tmp_path) != "63537f475172fa2c"


def test_dataset_cache_fingerprint_known_value(tmp_path: Path) -> None:
    p = tmp_path / "inter.csv"
    p.write_text("user_id,item_id\nu,a\n")
    fp, inputs = dataset_fingerprint([p], {"reader": "interactions"})
    assert fp == "3653603122ba176e3227855a20e9d8aac0e3671ca04da6a97859bf2ed6354ad3"
    assert inputs["files"] == [["inter.csv", file_sha256(p)]] and inputs["format_version"] == 1
    assert dataset_fingerprint([p], {"reader": "other"})[0] != fp


# --------------------------------------------------------------------------- devices


def test_resolve_device_forms() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu0", "", "CPU", "cuda:", "cuda:x", "cpu ", "tpu9", "cuda:0:1"])
def test_resolve_device_malformed(name: str) -> None:
    with pytest.raises(ValueError, match=r"is not a valid torch device \(use cpu, cuda, cuda:N, mps or auto\)") as info:
        resolve_device(name)
    assert repr(name) in str(info.value)


def test_resolve_device_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(RuntimeError, match=f"device '{name}' requested but CUDA is not available"):
            resolve_device(name)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="device 'mps' requested but MPS is not available"):
        resolve_device("mps")


def test_resolve_device_index_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match=r"device 'cuda:2' requested but only 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
