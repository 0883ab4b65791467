"""The command line as a whole: every command's --help ends with an example, errors are one line
with an exit code (2 for the user's input), and the old option spellings still work."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from avloc.cli import COMMANDS, cli

EXAMPLES = {
    "synth": "avloc synth --out ",
    "shard": "avloc shard --clips ",
    "train": "avloc train --shards ",
    "evaluate": "avloc evaluate --benchmark vggss --data-root ",
    "bench-throughput": "avloc bench-throughput --quick",
    "demo": "avloc demo --out ",
    "localize": "avloc localize street.mp4 --checkpoint ",
}


def test_every_command_has_an_example():
    assert set(EXAMPLES) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_help_ends_with_an_example(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    lines = [ln.strip() for ln in res.output.rstrip().splitlines() if ln.strip()]
    example_at = max(i for i, ln in enumerate(lines) if ln == "Example:")
    assert "Options:" in res.output[: res.output.rindex("Example:")]  # after the options, at the very end
    assert all(ln.startswith(f"avloc {name}") for ln in lines[example_at + 1:])
    assert lines[example_at + 1].startswith(EXAMPLES[name])


def test_help_shows_choices_and_hides_old_spellings():
    shard = CliRunner().invoke(cli, ["shard", "--help"]).output
    assert "[ffmpeg|pyav]" in shard and "[local|ray]" in shard
    assert "avsbench-s4" in CliRunner().invoke(cli, ["evaluate", "--help"]).output
    bench = CliRunner().invoke(cli, ["bench-throughput", "--help"]).output
    assert "--shards" in bench and "--data " not in bench
    synth = CliRunner().invoke(cli, ["synth", "--help"]).output
    assert "--n-clips" in synth and "--n " not in synth


def test_errors_are_one_line_with_exit_code_2_through_the_real_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "avloc.cli", "shard", "--clips", str(tmp_path / "none"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("avloc: error:")
    assert "Traceback" not in proc.stderr
    usage = subprocess.run([sys.executable, "-m", "avloc.cli", "train", "--no-such-option"], capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode == 2 and "see 'avloc train --help'" in usage.stderr
    assert subprocess.run([sys.executable, "-m", "avloc.cli", "--version"], capture_output=True,
                          timeout=120).returncode == 0
