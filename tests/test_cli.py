"""The command line as a user meets it: help, exit codes, one-line errors, no tracebacks."""

import subprocess
import sys

import pytest

from ctbone.cli import EXIT_FAILED, EXIT_USAGE, main


def test_help_lists_every_spec_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("info", "analyze", "batch", "render", "phantom", "demo"):
        assert f"  {command}" in out


def test_version_is_the_package_version(capsys):
    import ctbone

    assert main(["--version"]) == 0
    assert ctbone.__version__ in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["analyze"],                                   # missing PATH
    ["analyze", ".", "-o", "x", "--roi-mm", "a:b"],  # unparsable ROI
    ["analyze", ".", "-o", "x", "--threshold", "bone"],
    ["frobnicate"],
])
def test_unusable_arguments_exit_2(args, capsys):
    assert main(args) == EXIT_USAGE


def test_empty_folder_is_a_one_line_error_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty_scan"
    empty.mkdir()
    status = main(["info", str(empty)])
    err = capsys.readouterr().err
    assert status == EXIT_FAILED
    assert "empty_scan" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_output_inside_input_folder_is_refused(tmp_path, capsys):
    scan = tmp_path / "scan"
    scan.mkdir()
    (scan / "junk.txt").write_text("not a scan")
    status = main(["analyze", str(scan), "-o", str(scan / "out")])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert "inside the input folder" in err
    assert not (scan / "out").exists()


def test_console_script_runs_as_a_process():
    proc = subprocess.run([sys.executable, "-m", "ctbone.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "Usage: ctbone" in proc.stdout
