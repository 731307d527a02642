"""NVRTC wrapper and the on-disk artifact cache (no GPU needed)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from symgrad.backends.cuda import nvrtc
from symgrad.backends.cuda.cache import ArtifactCache, make_key
from symgrad.backends.cuda.errors import CudaUnavailableError, NvrtcError

SRC = 'extern "C" __global__ void twice(float* x, long long n) {\n' \
      '  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n' \
      '  if (i < n) x[i] = 2.0f * x[i];\n}\n'

needs_nvrtc = pytest.mark.skipif(not nvrtc.nvrtc_available(),
                                 reason="NVRTC is not installed (pip install 'symgrad[cuda]')")


# -- the cache (pure Python) ------------------------------------------------------------------------
def test_cache_round_trip_and_corruption(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    key = make_key("a", "b")
    assert key != make_key("ab") and key == make_key("a", "b")
    assert cache.get(key) is None and cache.misses == 1
    path = cache.put(key, b"payload" * 100)
    assert path is not None and path.exists()
    assert cache.get(key) == b"payload" * 100 and cache.hits == 1
    blob = path.read_bytes()
    for broken in (blob[: len(blob) // 2], blob[:-1] + b"X", b"", b"SGCACHE0" + blob[8:]):
        path.write_bytes(broken)
        assert cache.get(key) is None  # detected, removed, reported as a miss
        assert not path.exists()
        cache.put(key, b"payload" * 100)
    assert cache.corrupt == 4
    assert not list(tmp_path.rglob(".tmp-*"))  # no temporary files left behind


def test_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMGRAD_CACHE", "0")
    cache = ArtifactCache(tmp_path)
    assert cache.put("k" * 64, b"x") is None and cache.get("k" * 64) is None
    assert not any(tmp_path.iterdir())


def test_concurrent_writers_leave_one_good_entry(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    key = make_key("same")
    data = bytes(range(256)) * 4096
    threads = [threading.Thread(target=cache.put, args=(key, data)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.get(key) == data
    assert len(list(tmp_path.rglob("*.bin"))) == 1 and not list(tmp_path.rglob(".tmp-*"))


def test_arch_names() -> None:
    assert nvrtc.arch_number("sm_90") == nvrtc.arch_number("compute_90") == nvrtc.arch_number(90) == 90
    assert nvrtc.arch_number("8.6") == 86 and nvrtc.arch_number("sm_90a") == 90
    with pytest.raises(ValueError, match="not a CUDA architecture"):
        nvrtc.arch_number("hopper")


# -- NVRTC --------------------------------------------------------------------------------------------
@needs_nvrtc
def test_version_and_architectures() -> None:
    major, minor = nvrtc.nvrtc_version()
    assert major >= 11 and minor >= 0
    archs = nvrtc.supported_archs()
    assert 80 in archs and 90 in archs


@needs_nvrtc
@pytest.mark.parametrize("arch", [80, 90])
def test_cubin_and_ptx_from_one_compile(tmp_path: Path, arch: int) -> None:
    out = nvrtc.compile_cubin(SRC, arch, cache=ArtifactCache(tmp_path))
    assert out.target == "cubin" and out.data[:4] == b"\x7fELF" and not out.cached
    assert f".target sm_{arch}" in out.ptx and ".entry twice(" in out.ptx
    ptx = nvrtc.compile_ptx(SRC, arch, cache=False)
    assert ptx.data == ptx.ptx.encode() and ".entry twice(" in ptx.ptx


@needs_nvrtc
def test_cache_hits_and_rebuilds_corrupted_cubins(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, suffix=".nvrtc")
    first = nvrtc.compile_cubin(SRC, 90, cache=cache)
    second = nvrtc.compile_cubin(SRC, 90, cache=cache)
    assert not first.cached and second.cached
    assert second.data == first.data and second.ptx == first.ptx
    other = nvrtc.compile_cubin(SRC, 80, cache=cache)  # the architecture is in the key
    opts = nvrtc.compile_cubin(SRC, 90, cache=cache, options=["-lineinfo"])  # so are options
    assert not other.cached and not opts.cached
    files = list(tmp_path.rglob("*.nvrtc"))
    assert len(files) == 3
    for f in files:
        f.write_bytes(f.read_bytes()[:100])
    rebuilt = nvrtc.compile_cubin(SRC, 90, cache=cache)
    assert not rebuilt.cached and rebuilt.data == first.data and cache.corrupt == 1


@needs_nvrtc
def test_compile_errors_carry_the_log_and_the_lines() -> None:
    bad = SRC.replace("2.0f * x[i]", "2.0f * y[i]")
    with pytest.raises(NvrtcError) as info:
        nvrtc.compile_ptx(bad, 90, name="bad.cu", cache=False)
    text = str(info.value)
    assert 'identifier "y" is undefined' in text and "bad.cu(3)" in info.value.log
    assert ">    3 |   if (i < n) x[i] = 2.0f * y[i];" in text


@needs_nvrtc
def test_unsupported_architecture_is_named() -> None:
    with pytest.raises(NvrtcError, match="cannot target sm_50"):
        nvrtc.compile_cubin(SRC, 50, cache=False)


def test_missing_bindings_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def fake(name: str, *args: object, **kw: object) -> object:
        if name.startswith("cuda"):
            raise ImportError("No module named 'cuda'")
        return real(name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(nvrtc, "_module", None)
    monkeypatch.setattr(nvrtc, "_failure", None)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(CudaUnavailableError, match=r"pip install 'symgrad\[cuda\]'") as info:
        nvrtc.load_nvrtc()
    assert info.value.missing == "cuda-bindings"
    assert not nvrtc.nvrtc_available()
    monkeypatch.setattr(builtins, "__import__", real)
    monkeypatch.setattr(nvrtc, "_failure", None)
