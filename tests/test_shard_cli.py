"""`avloc shard` command line: wrong input -> one line and exit 2, before any work; the Ray path."""

from __future__ import annotations

import json
import os
import re

import pytest
from click.testing import CliRunner

from avloc import schema

from cli_invoke import avloc_cli
from test_shard_clips import make_clip


@pytest.fixture(scope="module")
def one_clip(tmp_path_factory):
    clips = tmp_path_factory.mktemp("cli-clips")
    make_clip(clips / "cliclip0001_000000.mp4", duration=3.5)
    return clips


def _run(args):
    return CliRunner().invoke(avloc_cli, ["shard", *args])


def _assert_one_line_error(result, code=2, text=None):
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith(("avloc: error:", "Error:")), result.output
    assert "Traceback" not in result.output
    if text:
        assert text in result.output


def test_missing_required_option():
    _assert_one_line_error(_run(["--out", "x"]), text="--clips")


def test_clips_folder_does_not_exist(tmp_path):
    _assert_one_line_error(_run(["--clips", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]),
                           text="is not a folder")
    assert not (tmp_path / "o").exists()


def test_bad_numbers_reported_together(one_clip, tmp_path):
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--val-fraction", "1.5", "--workers", "0"])
    _assert_one_line_error(r, text="--val-fraction")
    assert "--workers" in r.output


def test_missing_list_file(one_clip, tmp_path):
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--subset", str(tmp_path / "nope.txt")])
    _assert_one_line_error(r, text="nope.txt")


def test_malformed_csv(one_clip, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("abc,def,ghi\nonly-one-column\n")
    _assert_one_line_error(_run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--csv", str(bad)]),
                           text="line 2")


def test_output_not_writable_before_any_work(one_clip, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = _run(["--clips", str(one_clip), "--out", str(blocker / "shards")])
    _assert_one_line_error(r, text="not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the permission bits say")
def test_output_folder_without_write_permission(one_clip, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _assert_one_line_error(_run(["--clips", str(one_clip), "--out", str(ro)]), text="not writable")
    finally:
        ro.chmod(0o755)


def test_ray_without_the_extra(one_clip, tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ray is installed; test_ray_distributor covers it")
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--distributor", "ray"])
    _assert_one_line_error(r, text="pip install 'avloc[ray]'")


def test_json_report_and_output(one_clip, tmp_path):
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--no-progress", "--workers", "1",
              "--json", str(tmp_path / "report.json")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] == 1 and report["clips_built"] == 1
    assert "throughput:" in r.output


@pytest.mark.ray
def test_ray_distributor(one_clip, tmp_path):
    import ray

    from avloc.tools.sharding import ShardConfig, run_shard

    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        report = run_shard(ShardConfig(clips=one_clip, out=tmp_path / "o", distributor="ray", progress=False))
    finally:
        ray.shutdown()
    assert report["ok"] == 1 and report["distributor"] == "ray"
    assert (tmp_path / "o" / "train-000000_stats.json").is_file()


@pytest.mark.ray
def test_ray_and_local_write_the_same_shards(tmp_path):
    """Several shard jobs as Ray tasks on a local Ray instance: the same shards, byte for byte in
    their members, as the local process pool."""
    import tarfile

    import ray

    from avloc.tools.sharding import ShardConfig, run_shard
    from avloc.tools.synth import generate_clips

    clips = generate_clips(tmp_path / "synth", 6, seed=4, duration=3.5, width=96, height=72, test_fraction=0.0)

    def shard(out, distributor):
        return run_shard(ShardConfig(clips=clips.clips_dir, out=out, csv=clips.csv_path, samples_per_shard=2,
                                     workers=2, distributor=distributor, progress=False))

    def members(out):
        found = {}
        for tar in sorted(out.glob("*.tar")):
            with tarfile.open(tar) as tf:
                found[tar.name] = {m.name: tf.extractfile(m).read() for m in tf.getmembers()}
        return found

    local = shard(tmp_path / "local", "local")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        remote = shard(tmp_path / "ray", "ray")
    finally:
        ray.shutdown()
    assert remote["distributor"] == "ray" and remote["ok"] == local["ok"] == 6
    a, b = members(tmp_path / "local"), members(tmp_path / "ray")
    assert len(a) == 3 and a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys()
        for member in a[name]:
            assert a[name][member] == b[name][member], (name, member)


def test_empty_clips_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_one_line_error(_run(["--clips", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]), text="no clips")


def test_nothing_selected(one_clip, tmp_path):
    subset = tmp_path / "subset.txt"
    subset.write_text("someotherid_000000\n")
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--subset", str(subset)])
    _assert_one_line_error(r, text="1 not in --subset")


def test_second_run_on_a_locked_output(one_clip, tmp_path):
    import fcntl

    out = tmp_path / "o"
    out.mkdir()
    with open(out / ".avloc-shard.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = _run(["--clips", str(one_clip), "--out", str(out)])
    _assert_one_line_error(r, text="another `avloc shard` run")


def test_choice_and_number_problems_reported_together(one_clip, tmp_path):
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--decoder", "gstreamer",
              "--distributor", "slurm", "--samples-per-shard", "0"])
    _assert_one_line_error(r, text="--decoder must be one of ffmpeg, pyav")
    assert "--distributor must be one of local, ray" in r.output and "--samples-per-shard" in r.output
    assert not (tmp_path / "o").exists()


def _progress_lines(output: str) -> list:
    return [ln for ln in output.splitlines() if re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] shard: ", ln)]


def test_progress_lines_without_a_terminal(one_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("AVLOC_PROGRESS_INTERVAL", "0")
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert r.exit_code == 0, r.output
    lines = _progress_lines(r.stderr)
    assert lines, r.output
    assert "1/1 (100.0%)" in lines[-1] and "clip/s" in lines[-1] and "done in" in lines[-1]
    assert "avloc shard: 1 clips found" in r.stderr  # the start line, on stderr too
    assert "throughput:" in r.stdout and not _progress_lines(r.stdout)


def test_no_progress_prints_no_progress_lines(one_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("AVLOC_PROGRESS_INTERVAL", "0")
    r = _run(["--clips", str(one_clip), "--out", str(tmp_path / "o"), "--workers", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert not _progress_lines(r.output)


def test_written_files_get_the_umask_modes(one_clip, tmp_path):
    from avloc.tools.sharding import ShardConfig, run_shard

    old = os.umask(0o022)
    try:
        run_shard(ShardConfig(clips=one_clip, out=tmp_path / "o", workers=1, progress=False,
                              report_json=tmp_path / "report.json"))
    finally:
        os.umask(old)
    out = tmp_path / "o"
    names = ["train-000000.tar", "train-000000.idx", "train-000000.parquet", "train-000000_stats.json",
             schema.MANIFEST_PATH, "dataset.json", "missing_ids.txt", schema.CARD_NAME,
             f"{schema.MANIFEST_DIR}/{schema.CARD_NAME}"]
    for path in [out / n for n in names] + [tmp_path / "report.json"]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert not list(out.glob(".*.tmp"))
    old = os.umask(0o002)
    try:
        run_shard(ShardConfig(clips=one_clip, out=tmp_path / "g", workers=1, progress=False))
    finally:
        os.umask(old)
    for name in names:
        assert (tmp_path / "g" / name).stat().st_mode & 0o777 == 0o664, name


@pytest.mark.parametrize("where", ["missing-folder/report.json", "a-folder", "readonly/report.json"])
def test_unwritable_json_path_refused_before_any_work(one_clip, tmp_path, where):
    (tmp_path / "a-folder").mkdir()
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    if where.startswith("readonly") and os.access(readonly, os.W_OK):
        pytest.skip("root writes whatever the permission bits say")
    out = tmp_path / "o"
    result = _run(["--clips", str(one_clip), "--out", str(out), "--no-progress", "--json", str(tmp_path / where)])
    _assert_one_line_error(result, text="--json")
    assert not (out / schema.MANIFEST_PATH).exists()  # refused before the run, not after it


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs the right to mount, e.g. root in a container)."""
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_at_the_manifest_stage_is_one_line(tmp_path, small_disk):
    """The shards fit, the manifest does not: one line naming the file and the free space, exit 1;
    the finished shard stays and a rerun with room finishes the set."""
    import shutil

    clips = tmp_path / "clips"
    for i in range(3):
        make_clip(clips / f"diskclip00{i}_000000.mp4", duration=2.0)
    out = small_disk / "o"
    assert _run(["--clips", str(clips), "--out", str(out), "--no-progress", "--workers", "1"]).exit_code == 0
    (out / schema.MANIFEST_PATH).unlink()
    (out / "dataset.json").unlink()
    free = shutil.disk_usage(small_disk).free
    with open(small_disk / "filler", "wb") as fh:  # leave 8 KiB: the run's small files fit, the manifest not
        fh.write(b"\0" * (free - 8192))
    result = _run(["--clips", str(clips), "--out", str(out), "--no-progress", "--workers", "1"])
    _assert_one_line_error(result, code=1, text=f"cannot write {out / schema.MANIFEST_PATH}: No space left on device (")
    assert "KiB free" in result.output
    assert (out / "train-000000.tar").is_file() and not list(out.glob(".*.tmp"))
    (small_disk / "filler").unlink()
    again = _run(["--clips", str(clips), "--out", str(out), "--no-progress", "--workers", "1"])
    assert again.exit_code == 0 and (out / schema.MANIFEST_PATH).is_file() and (out / "dataset.json").is_file()


def test_a_set_begun_with_the_other_decoder_says_how_to_resume(one_clip, tmp_path):
    out = tmp_path / "o"
    assert _run(["--clips", str(one_clip), "--out", str(out), "--no-progress", "--workers", "1",
                 "--decoder", "ffmpeg"]).exit_code == 0
    result = _run(["--clips", str(one_clip), "--out", str(out), "--no-progress", "--workers", "1"])  # default: pyav
    _assert_one_line_error(result, text="built with --decoder ffmpeg; pass --decoder ffmpeg to resume")
