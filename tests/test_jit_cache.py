"""The first-run check: whether the compiled kernels are in numba's cache yet."""

import os
import subprocess
import sys
import textwrap

import pytest

from ctbone import jit_cache


def test_a_kernel_is_cached_once_it_has_run(tmp_path, monkeypatch):
    # a cached kernel of a module of its own: uncached until its first call compiles it, then cached
    (tmp_path / "tiny_kernel.py").write_text(textwrap.dedent("""
        from numba import njit

        @njit(cache=True)
        def twice(x):
            return 2 * x
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import tiny_kernel

    assert jit_cache.is_cached(tiny_kernel.twice) is False
    assert tiny_kernel.twice(21) == 42
    assert jit_cache.is_cached(tiny_kernel.twice) is True
    assert jit_cache.is_cached(len) is None  # not a numba kernel: cannot be told


def test_an_empty_cache_reads_as_a_first_run(tmp_path):
    code = "from ctbone.jit_cache import kernels_cached; print(kernels_cached())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)})
    assert out.stdout.strip() == "False"


def test_a_missing_sentinel_cannot_be_told(monkeypatch):
    monkeypatch.setattr(jit_cache, "SENTINELS", (("ctbone.segment.distance", "no_such_kernel"),))
    assert jit_cache.kernels_cached() is None


@pytest.mark.parametrize("quiet", [False, True])
def test_the_command_says_it_is_compiling_on_a_first_run(tmp_path, monkeypatch, capsys, quiet):
    from ctbone.cli import main

    monkeypatch.setattr(jit_cache, "kernels_cached", lambda: False)
    folder = tmp_path / "nothing"
    folder.mkdir()
    # the note comes before the scan is read (here: an empty folder, refused)
    main(["analyze", str(folder), "-o", str(tmp_path / "out")] + (["-q"] if quiet else []))
    err = capsys.readouterr().err
    assert (jit_cache.FIRST_RUN_NOTE in err) is not quiet
    assert "error" in err  # and the scan's own error still follows


def test_no_note_once_the_kernels_are_cached(tmp_path, monkeypatch, capsys):
    from ctbone.cli import main

    monkeypatch.setattr(jit_cache, "kernels_cached", lambda: True)
    folder = tmp_path / "nothing"
    folder.mkdir()
    main(["analyze", str(folder), "-o", str(tmp_path / "out")])
    assert jit_cache.FIRST_RUN_NOTE not in capsys.readouterr().err
