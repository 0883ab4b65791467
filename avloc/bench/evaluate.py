"""Evaluation throughput: `avloc evaluate` against the reference's per-sample test loop.

Data: a VGG-SS-layout root (``frames/<id>.jpg`` 320x240, ``audio/<id>.wav`` 10 s 16 kHz,
``vggss.json``, ``vggss_test.csv``) holding ``n`` items: 5,158 in the full run (the VGG-SS test
size), fewer in quick mode. ``avloc synth``'s ``write_benchmark`` renders up to ``UNIQUE`` distinct
items; larger sets reuse those files under new ids (hard links), so every item still costs a
JPEG decode, a wav read, a spectrogram, a forward pass and its scoring.

Variants (same untrained FNACModel, dim 512, same items, same bicubic protocol):
* ``reference loop (batch 1)``: what the published test script does per sample: load, forward
  one sample, upsample, numpy min-max / sort / cIoU;
* ``avloc evaluate (batch 32)``: the library behind the command (loading batches, fixed
  16-sample network chunks, vectorised scoring, baselines scored too);
* ``avloc evaluate cuda`` when a GPU is visible.
Each measurement is one whole evaluation of the ``n`` items (model load included); samples/s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from avloc.bench.harness import BenchContext, Record, skipped, summarize
from avloc.bench.replicate import link_or_copy
from avloc.utils.atomic import atomic_write_text
from avloc.utils.progress import log
from avloc.utils.system import usable_cores

SCENARIO = "evaluate"
VGGSS_SIZE = 5158
UNIQUE = 256


def build_vggss_root(workdir: Path, n: int, progress: bool = False) -> Path:
    """A VGG-SS layout with n items (at most UNIQUE rendered, the rest hard-linked under new ids)."""
    from avloc.tools.synth import write_benchmark

    root = workdir / f"vggss-{n}"
    if (root / "vggss_test.csv").is_file():
        return root
    unique = min(n, UNIQUE)
    log(f"bench: evaluate: rendering {unique} synthetic VGG-SS items")
    src = write_benchmark(workdir / f"vggss-unique-{unique}", "vggss", unique, seed=0, workers=usable_cores(),
                          progress=progress)
    if n == unique:
        return src.root
    (root / "frames").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    entries = []
    for i in range(n):
        base = src.items[i % unique]
        new_id = f"{base['id'][:5]}{i:06d}{base['id'][11:]}"
        for kind, ext in (("frame", "jpg"), ("audio", "wav")):
            dst = root / ("frames" if kind == "frame" else "audio") / f"{new_id}.{ext}"
            link_or_copy(base[kind], dst)
        entries.append({"file": new_id, "class": base["label"], "bbox": base["bbox"]})
    atomic_write_text(root / "vggss.json", json.dumps(entries))
    atomic_write_text(root / "vggss_test.csv", "".join(f"{e['file']}\r\n" for e in entries))
    return root


def reference_loop(root: Path, checkpoint: Path, device: str = "cpu", upsample: str = "bicubic") -> dict:
    """The published test script's per-sample loop (batch 1, numpy scoring)."""
    import torch
    import torch.nn.functional as F

    from avloc import metrics
    from avloc.evaluation import media
    from avloc.evaluation.benchmarks import load_benchmark
    from avloc.evaluation.model_loading import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint, device)
    items = load_benchmark("vggss", root).items
    cious = []
    for it in items:
        image = media.load_frame(it.frame)[None].to(device)
        spec = media.load_spec(it.audio)[None].to(device)
        with torch.no_grad():
            v, a = model(image, spec)
            heat = torch.einsum("nchw,nc->nhw", v, a)[:, None]
            heat = F.interpolate(heat, size=(224, 224), mode=upsample, align_corners=upsample == "bilinear")
        pred = heat[0, 0].cpu().numpy()
        vmin, vmax = pred.min(), pred.max()
        if vmax - vmin != 0:
            pred = (pred - vmin) / (vmax - vmin)
        thr = np.sort(pred.flatten())[int(224 * 224 / 2)]
        infer = (pred >= thr).astype(np.float64)
        g = it.gt_map().astype(np.float64)
        cious.append(np.sum(infer * g) / (np.sum(g) + np.sum(infer * (g == 0))))
    return metrics.summarise_cious(cious)


class _Measure:
    def __init__(self, fn, n: int):
        self.fn, self.n = fn, n
        self.last: dict = {}

    def __call__(self) -> float:
        t0 = time.perf_counter()
        self.last = self.fn()
        return self.n / (time.perf_counter() - t0)


def run(ctx: BenchContext, n: int = None) -> list:
    import torch

    from avloc.checkpoint import save_checkpoint
    from avloc.evaluation.options import EvaluateOptions
    from avloc.evaluation.runner import evaluate
    from avloc.model import FNACModel

    cores = usable_cores()
    torch.set_num_threads(max(1, cores))
    if n is None:
        n = 16 if ctx.quick else VGGSS_SIZE  # quick: one 16-sample network chunk
    rounds, warmup = (2, 1) if ctx.quick and n <= 64 else (1, 0)
    root = build_vggss_root(ctx.workdir, n, progress=ctx.progress)
    torch.manual_seed(0)
    model = FNACModel(dim=512)
    checkpoint = ctx.workdir / "evaluate-model.pt"
    save_checkpoint(checkpoint, model_state=model.state_dict(), model_config=model.model_config())
    workers = 0 if cores <= 2 else min(4, cores // 2)

    def avloc_eval(device: str, batch_size: int, audio_controls: str = "none"):
        # like for like with the reference loop: no audio-control rows unless named
        options = EvaluateOptions(benchmark="vggss", data_root=root, checkpoint=checkpoint, batch_size=batch_size,
                                  workers=workers, device=device, progress=False, write_reports=False,
                                  audio_controls=audio_controls)
        return lambda: evaluate(options)["rows"][0]

    variants = {"reference loop (batch 1)": _Measure(lambda: reference_loop(root, checkpoint), n),
                "avloc evaluate (batch 32)": _Measure(avloc_eval("cpu", 32), n),
                "avloc evaluate + audio controls (batch 32)": _Measure(avloc_eval("cpu", 32, "silence,shuffled"), n)}
    cuda = torch.cuda.is_available()
    if cuda:
        variants["avloc evaluate cuda (batch 128)"] = _Measure(avloc_eval("cuda", 128), n)
    size = f"{n} items"
    log(f"bench: evaluate {size}: {', '.join(variants)}; {rounds} round(s), {warmup} warm-up")
    results = ctx.interleave(variants, rounds=rounds, warmup=warmup, desc="bench evaluate")
    records: list[Record] = []
    for name, values in results.items():
        last = variants[name].last
        records.append(summarize(SCENARIO, size, name, values, unit="samples/s", higher_is_better=True,
                                 baseline=name.startswith("reference"), ap50=last.get("ciou"), auc=last.get("auc"),
                                 workers=0 if name.startswith("reference") else workers, threads=torch.get_num_threads(),
                                 unique_items=min(n, UNIQUE)))
    if not cuda:
        records.append(skipped(SCENARIO, "avloc evaluate cuda (batch 128)", size, "skipped: no CUDA",
                               unit="samples/s", higher_is_better=True))
    return records

