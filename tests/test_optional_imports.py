"""A machine without DALI, webdataset, PyAV, ffmpeg-python or soundfile (a GPU host's stock image):
the model, losses, kernels, evaluation and the CLI still import and run; what needs a missing
package says so in one line instead of failing later or silently."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile

from avloc import audio

ROOT = Path(__file__).resolve().parents[1]
MISSING = ("webdataset", "av", "ffmpeg", "imageio_ffmpeg", "soundfile", "nvidia.dali")


def run_without(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where the MISSING packages cannot be imported."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in MISSING))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=240, cwd=ROOT)


def test_core_runs_without_the_optional_packages(tmp_path):
    code = f"""
        import importlib, sys
        for name in {MISSING!r}:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
            else:
                raise SystemExit(name + " is importable: the blocker failed")
        import torch
        from avloc.model import FNACModel
        from avloc.losses import fnac_losses
        from avloc.evaluation import media
        from avloc.data import build_loader, LoaderOptions, dali_available
        from avloc.errors import InputError
        import loader_fixtures as lf
        import avloc.cli, avloc.commands.train, avloc.commands.evaluate, avloc.commands.bench  # noqa: F401
        assert not dali_available()
        torch.manual_seed(0)
        model = FNACModel(dim=32)
        v, a = model(torch.randn(2, 3, 64, 64), torch.randn(2, 1, 257, 200))
        out = fnac_losses(v, a, impl="torch")
        sum(out[k] for k in ("contrastive", "fns1", "tns", "fns2")).backward()
        # evaluation reads 16-bit wavs with the standard library
        lf.write_folder(r"{tmp_path / 'folder'}", 1, seconds=1.0)
        wav = next((__import__("pathlib").Path(r"{tmp_path / 'folder'}") / "audio").glob("*.wav"))
        assert media.load_spec(wav).shape == (1, 257, 200)
        # the torch shard loader reads the tars through their indexes: no webdataset or DALI needed
        lf.write_shards(r"{tmp_path / 'shards'}", {{"train": 4}})
        loader = build_loader(r"{tmp_path / 'shards'}", "train", LoaderOptions(backend="auto", batch_size=2,
                                                                               num_workers=0))
        assert loader.backend == "torch", loader.backend
        assert [len(b["key"]) for b in loader] == [2, 2]
        print("core ok")
    """
    proc = run_without(code, tmp_path)
    assert proc.returncode == 0 and "core ok" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_cli_help_runs_without_the_optional_packages(tmp_path):
    proc = run_without("from avloc.cli import main; import sys; sys.argv = ['avloc', 'evaluate', '--help']; main()",
                       tmp_path)
    assert proc.returncode == 0 and "Usage" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_stdlib_wav_reader_matches_soundfile(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(-32768, 32767, size=(1234, 2), dtype=np.int16)
    path = tmp_path / "x.wav"
    soundfile.write(str(path), data, 22050, subtype="PCM_16")
    got, sr = audio._read_pcm16_wav(path)
    want, want_sr = audio.read_wav(path)
    assert sr == want_sr == 22050 and got.dtype == np.int16 and np.array_equal(got, want)
    soundfile.write(str(tmp_path / "f.wav"), data.astype(np.float32) / 32768, 8000, subtype="FLOAT")
    with pytest.raises(ValueError, match="16-bit PCM"):
        audio._read_pcm16_wav(tmp_path / "f.wav")
