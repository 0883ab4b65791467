"""One GPU check in one go (<= 8 minutes): run on the GPU host from the repository root, with the
folder benchmarks/device/prepare.py wrote travelling beside it.

  python3 benchmarks/device/run.py --inputs device-inputs --out "$OUT"
  python3 benchmarks/device/run.py --dry-run --inputs D --out O    # every stage, tiny, on CPU

Stages, each in its own process under its own time limit (a stage that overruns is cut and
reported as such; the next one still runs; the whole run keeps to --budget seconds):

  setup        install the carried wheels (to a folder on PYTHONPATH) and avloc itself (editable)
  environment  GPU, driver, CUDA, torch / torchvision / triton versions, cores
  gpu-tests    pytest -m gpu (Triton kernels at real shapes fp32/bf16 fwd+bwd, nvJPEG decode parity)
  kernels      fnac_losses forward+backward, bf16 (and fp32 at B=4096): triton vs chunked torch vs
               the einsum reference; CUDA-event medians and peak memory; the reference is cut
               where its B x B x HW volumes would not fit
  train        batch 256 bf16: model-only bound (batches on the GPU) vs end to end from shards with
               the torch loader, frames decoded in the workers (PIL) and on the GPU (nvJPEG);
               samples/s, data-wait %, GPU memory
  evaluate     avloc evaluate on a synthetic VGG-SS copy (5,158 items, linked from the carried ones)

Into --out: results.json (every stage's numbers and status, rewritten after each stage), log.txt
(every stage's output), table.md (the closing table, also printed last). The parent process uses
the standard library only: the setup stage is what makes avloc importable on a bare host.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# (stage, seconds): the sum stays under the 8-minute goal with room for the start
STAGES = (("setup", 45), ("environment", 20), ("gpu-tests", 120), ("kernels", 110), ("train", 110), ("evaluate", 60))
BUDGET_S = 470
# --dry-run: every stage gets this much (the CPU machine it checks on may be shared and slow)
DRY_STAGE_S, DRY_BUDGET_S = 300, 1500
SIZES = {
    "gpu": {"kernel_sizes": [(256, 49), (1024, 49), (4096, 49), (8192, 49), (16384, 49), (256, 196), (1024, 196),
                             (4096, 196)],
            "fp32_sizes": [(4096, 49)], "dim": 512, "max_reps": 9, "train_batch": 256, "image_size": 224,
            "model_dim": 512, "train_steps": 12, "train_rounds": 3, "shard_copies": 40, "eval_items": 5158,
            "eval_batch": 128, "eval_runs": 2},
    "dry": {"kernel_sizes": [(8, 49), (8, 196)], "fp32_sizes": [(8, 49)], "dim": 32, "max_reps": 1, "train_batch": 2,
            "image_size": 64, "model_dim": 32, "train_steps": 1, "train_rounds": 1, "shard_copies": 2,
            "eval_items": 2, "eval_batch": 2, "eval_runs": 1},
}


# ============================================================================ the stages (child processes)
def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def stage_setup(ctx: dict) -> dict:
    inputs, site = Path(ctx["inputs"]), Path(ctx["site"])
    wheels = sorted(str(p) for p in (inputs / "wheels").glob("*.whl"))
    out = {"wheels": [Path(w).name for w in wheels]}
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--upgrade", "--target", str(site), *wheels], check=True, timeout=120)
    probe = subprocess.run([sys.executable, "-c", "import avloc.tools"], cwd="/", capture_output=True)
    if probe.returncode != 0 and not ctx["dry_run"]:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                        "-e", str(REPO)], check=True, timeout=120)
        out["avloc"] = "installed (editable)"
    else:
        out["avloc"] = "already importable"
    check = subprocess.run([sys.executable, "-c", "import avloc, webdataset; print(avloc.__file__)"], cwd="/",
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ctx["pythonpath"]})
    out["import_check"] = (check.stdout + check.stderr).strip().splitlines()[-1:] if check.stdout + check.stderr else []
    if check.returncode != 0:
        raise RuntimeError(f"avloc or webdataset does not import after setup: {check.stderr.strip()[-500:]}")
    return out


def stage_environment(ctx: dict) -> dict:
    import platform

    import torch
    import torchvision

    out = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
           "cuda_runtime": torch.version.cuda, "cpu_cores": os.cpu_count(), "cuda_available": torch.cuda.is_available()}
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        out["triton"] = None
    for name in ("numpy", "PIL", "webdataset"):
        try:
            out[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            out[name] = None
    try:
        import nvidia.dali  # noqa: F401

        out["dali"] = True
    except ImportError:
        out["dali"] = False
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}")
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        out["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()[-200:]
    manifest = Path(ctx["inputs"]) / "manifest.json"
    if manifest.is_file():
        out["inputs_prepared_at_commit"] = json.loads(manifest.read_text()).get("commit")
    return out


def stage_gpu_tests(ctx: dict) -> dict:
    targets = ["tests/test_ops_gpu.py", "tests/test_device_decode.py"] if ctx["dry_run"] else ["tests"]
    # -o addopts=: one process (the host has no pytest-xdist, and the GPU is one device)
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rA",
           "--timeout", "100", "--continue-on-collection-errors", *targets]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=ctx["limit"])
    print(proc.stdout[-20000:])
    print(proc.stderr[-4000:], file=sys.stderr)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    summary = lines[-1].strip("= ") if lines else ""
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    prints = [ln for ln in lines if ln.startswith("nvjpeg vs PIL")]
    # pytest exits 5 when every test was deselected/skipped: a CPU dry run
    ok = proc.returncode == 0 or (ctx["dry_run"] and proc.returncode == 5)
    return {"returncode": proc.returncode, "summary": summary, "failed": failed[:20], "decode_parity": prints,
            "status": "ok" if ok else "failed"}


def stage_kernels(ctx: dict) -> dict:
    import torch
    import torch.nn.functional as F

    from avloc.losses import LOSS_TERMS, fnac_losses

    s = SIZES[ctx["sizes"]]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    impls = ["triton", "torch", "reference"]
    deadline = ctx["started"] + ctx["limit"] * 0.85
    rows = []

    def step(visual, audio, impl):
        out = fnac_losses(visual, audio, impl=impl)
        sum(out[k] for k in LOSS_TERMS).backward()

    def timed(fn, reps):
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2], len(times)

    cases = [(b, hw, torch.bfloat16) for b, hw in s["kernel_sizes"]] + [(b, hw, torch.float32) for b, hw in s["fp32_sizes"]]
    for b, hw, dtype in cases:
        side = int(round(hw ** 0.5))
        gen = torch.Generator().manual_seed(b + hw)
        v0 = F.normalize(torch.randn(b, s["dim"], side, side, generator=gen), dim=1).to(device, dtype)
        a0 = F.normalize(torch.randn(b, s["dim"], generator=gen), dim=1).to(device, dtype)
        for impl in impls:
            row = {"B": b, "HW": hw, "dtype": str(dtype).replace("torch.", ""), "impl": impl}
            rows.append(row)
            if impl == "triton" and device.type != "cuda":
                row["status"] = "skipped: triton needs CUDA (the interpreter cases run in the default tests)"
                continue
            volume = b * b * hw * 4
            if impl == "reference":
                free = torch.cuda.mem_get_info()[0] if device.type == "cuda" else 8 * 2**30
                if 4 * volume > free:
                    row["status"] = f"cut: needs ~{4 * volume / 2**30:.0f} GiB ({volume / 2**30:.1f} GiB per volume), " \
                                    f"{free / 2**30:.0f} GiB free"
                    continue
            if time.time() > deadline:
                row["status"] = "not reached: stage time"
                continue
            visual, audio = v0.clone().requires_grad_(), a0.clone().requires_grad_()
            try:
                step(visual, audio, impl)  # compile / warm up
                visual.grad = audio.grad = None
                _sync(device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
                first, _ = timed(lambda: step(visual, audio, impl), 1)
                if device.type == "cuda":
                    row["peak_extra_gib"] = round((torch.cuda.max_memory_allocated() - base) / 2**30, 3)
                reps = max(1, min(s["max_reps"], int(1.5 / max(first, 1e-4))))
                median, n = timed(lambda: step(visual, audio, impl), reps)
                row.update(status="ok", median_ms=round(median * 1e3, 3), reps=n)
            except torch.OutOfMemoryError as exc:
                row["status"] = f"cut: out of memory ({str(exc).splitlines()[0][:120]})"
            finally:
                visual = audio = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            print(json.dumps(row), flush=True)
    # speed-ups against the reference and the chunked torch path, per size
    for row in rows:
        if row.get("status") != "ok" or row["impl"] == "reference":
            continue
        for base in ("reference", "torch"):
            ref = next((r for r in rows if r["impl"] == base and r["B"] == row["B"] and r["HW"] == row["HW"]
                        and r["dtype"] == row["dtype"] and r.get("status") == "ok"), None)
            if ref is not None and ref is not row:
                row[f"speedup_vs_{base}"] = round(ref["median_ms"] / row["median_ms"], 2)
    return {"device": str(device), "dim": s["dim"], "rows": rows}


def _expand_shards(src: Path, dst: Path, copies: int) -> Path:
    """A shard set of ``copies`` x the carried tars, linked under new names (keys repeat across copies)."""
    dst.mkdir(parents=True, exist_ok=True)
    summary = json.loads((src / "dataset.json").read_text())
    entries, total = [], 0
    for c in range(copies):
        for e in summary["shards"]["train"]:
            name = f"train-{c:03d}{e['name'][len('train-'):]}"
            for ext in (".tar", ".idx"):
                target = dst / (name[:-4] + ext)
                if not target.exists():
                    try:
                        os.link(src / (e["name"][:-4] + ext), target)
                    except OSError:
                        target.write_bytes((src / (e["name"][:-4] + ext)).read_bytes())
            entries.append({"name": name, "samples": e["samples"]})
            total += e["samples"]
    summary["shards"] = {"train": entries}
    summary["counts"] = {"train": total}
    (dst / "dataset.json").write_text(json.dumps(summary))
    return dst


def stage_train(ctx: dict) -> dict:
    import dataclasses
    import itertools

    import torch

    from avloc.data import build_loader
    from avloc.training.config import build_config
    from avloc.training.trainer import Trainer

    s = SIZES[ctx["sizes"]]
    cuda = torch.cuda.is_available()
    shards = _expand_shards(Path(ctx["inputs"]) / "shards", Path(ctx["work"]) / "shards", s["shard_copies"])
    workers = max(1, min(14, (os.cpu_count() or 2) - 2)) if cuda else 1
    cfg = build_config(None, [f"batch_size={s['train_batch']}", f"image_size={s['image_size']}", "visual_weights=none",
                              f"dim={s['model_dim']}",
                              "val_every=0", "progress=false", "warmup_epochs=0", "epochs=1000", "loader=torch",
                              f"num_workers={workers}", f"device={'cuda' if cuda else 'cpu'}"])
    trainer = Trainer.build(cfg, shards)
    device = trainer.device
    loaders = {"worker": trainer.loader,
               "device": build_loader(shards, "train", dataclasses.replace(trainer.loader.options, image_decode="device"))}
    print(f"train: batch {cfg.batch_size}, image {cfg.image_size}, {device}, precision {trainer.precision}, "
          f"kernel {trainer.kernel}, {workers} workers, {loaders['worker'].num_samples} samples", flush=True)

    def stream(loader):
        for epoch in itertools.count():
            loader.set_epoch(epoch)
            yield from loader

    streams = {name: stream(loader) for name, loader in loaders.items()}
    memory = [next(streams["worker"]) for _ in range(1 if ctx["dry_run"] else 2)]
    steps = s["train_steps"]

    def model_only():
        _sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            trainer.train_step(memory[i % len(memory)], epoch=1)
        _sync(device)
        return {"samples_per_s": steps * cfg.batch_size / (time.perf_counter() - t0)}

    def end_to_end(name):
        def run():
            _sync(device)
            t0, waited = time.perf_counter(), 0.0
            for _ in range(steps):
                tw = time.perf_counter()
                batch = next(streams[name])
                _sync(device)  # a device-decoded batch is ready only when its kernels are
                waited += time.perf_counter() - tw
                trainer.train_step(batch, epoch=1)
            _sync(device)
            elapsed = time.perf_counter() - t0
            return {"samples_per_s": steps * cfg.batch_size / elapsed, "data_wait": waited / elapsed}
        return run

    variants = {"model-only (batches on the device)": model_only,
                "end-to-end, decode in workers (PIL)": end_to_end("worker"),
                "end-to-end, decode on the device (torchvision nvJPEG)" if cuda else
                "end-to-end, decode in the main process (torchvision, CPU)": end_to_end("device")}
    if not ctx["dry_run"]:
        for fn in variants.values():  # warm-up: cudnn autotune, worker start, first batches
            fn()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    results = {name: [] for name in variants}
    deadline = ctx["started"] + ctx["limit"] * 0.8
    for _ in range(s["train_rounds"]):
        for name, fn in variants.items():
            if time.time() < deadline or not results[name]:
                results[name].append(fn())
    out = {"batch_size": cfg.batch_size, "image_size": cfg.image_size, "precision": trainer.precision,
           "kernel": trainer.kernel, "num_workers": workers, "steps_per_measurement": steps, "device": str(device),
           "variants": {}}
    bound = None
    for name, runs in results.items():
        rates = sorted(r["samples_per_s"] for r in runs)
        entry = {"samples_per_s_median": round(rates[len(rates) // 2], 3), "rounds": len(runs)}
        if "data_wait" in runs[0]:
            waits = sorted(r["data_wait"] for r in runs)
            entry["data_wait_pct_median"] = round(100 * waits[len(waits) // 2], 1)
        bound = bound or entry["samples_per_s_median"]
        entry["of_model_only_pct"] = round(100 * entry["samples_per_s_median"] / bound, 1)
        out["variants"][name] = entry
    if cuda:
        out["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def _expand_vggss(src: Path, dst: Path, n: int) -> Path:
    """A VGG-SS layout of ``n`` items whose files are links to the carried ones (under new ids)."""
    entries_src = json.loads((src / "vggss.json").read_text())
    (dst / "frames").mkdir(parents=True, exist_ok=True)
    (dst / "audio").mkdir(exist_ok=True)
    entries = []
    for i in range(n):
        base = entries_src[i % len(entries_src)]
        new_id = f"{base['file'][:5]}{i:06d}{base['file'][11:]}"
        for folder, ext in (("frames", "jpg"), ("audio", "wav")):
            target = dst / folder / f"{new_id}.{ext}"
            if not target.exists():
                try:
                    os.link(src / folder / f"{base['file']}.{ext}", target)
                except OSError:
                    target.write_bytes((src / folder / f"{base['file']}.{ext}").read_bytes())
        entries.append({**base, "file": new_id})
    (dst / "vggss.json").write_text(json.dumps(entries))
    (dst / "vggss_test.csv").write_text("".join(f"{e['file']}\r\n" for e in entries))
    return dst


def stage_evaluate(ctx: dict) -> dict:
    import torch

    from avloc.checkpoint import save_checkpoint
    from avloc.evaluation.options import EvaluateOptions
    from avloc.evaluation.runner import evaluate
    from avloc.model import FNACModel

    s = SIZES[ctx["sizes"]]
    cuda = torch.cuda.is_available()
    root = _expand_vggss(Path(ctx["inputs"]) / "vggss", Path(ctx["work"]) / "vggss", s["eval_items"])
    torch.manual_seed(0)
    model = FNACModel(dim=512 if cuda else 32)
    checkpoint = Path(ctx["work"]) / "untrained.pt"
    save_checkpoint(checkpoint, model_state=model.state_dict(), model_config=model.model_config())
    workers = max(1, min(8, (os.cpu_count() or 2) // 2)) if cuda else 0
    options = EvaluateOptions(benchmark="vggss", data_root=root, checkpoint=checkpoint, batch_size=s["eval_batch"],
                              workers=workers, device="cuda" if cuda else "cpu", progress=False, write_reports=False,
                              audio_controls="none")
    runs = []
    for _ in range(s["eval_runs"]):  # the first one warms up (cudnn, page cache)
        t0 = time.perf_counter()
        row = evaluate(options)["rows"][0]
        runs.append(s["eval_items"] / (time.perf_counter() - t0))
    return {"items": s["eval_items"], "batch_size": s["eval_batch"], "workers": workers, "device": options.device,
            "samples_per_s_first": round(runs[0], 3), "samples_per_s": round(runs[-1], 3),
            "ciou_untrained": row.get("ciou")}


STAGE_FUNCTIONS = {"setup": stage_setup, "environment": stage_environment, "gpu-tests": stage_gpu_tests,
                   "kernels": stage_kernels, "train": stage_train, "evaluate": stage_evaluate}


def run_stage(name: str, ctx_path: Path) -> int:
    ctx = json.loads(ctx_path.read_text())
    ctx["started"] = time.time()
    result = STAGE_FUNCTIONS[name](ctx)
    result.setdefault("status", "ok")
    Path(ctx["result"]).write_text(json.dumps(result, indent=1, default=str))
    return 0


# ============================================================================ the parent (standard library only)
def _key_numbers(name: str, r: dict) -> str:
    if r.get("status") not in ("ok", "failed"):
        return ""
    if name == "environment":
        return f"{r.get('gpu', 'no GPU')}; torch {r.get('torch')}, triton {r.get('triton')}, python {r.get('python')}"
    if name == "gpu-tests":
        return r.get("summary", "")
    if name == "kernels":
        picks = [x for x in r.get("rows", []) if x.get("status") == "ok" and x["impl"] == "triton"]
        parts = [f"B={x['B']}/HW={x['HW']}/{x['dtype']}: {x['median_ms']} ms"
                 + (f" ({x['speedup_vs_reference']}x ref)" if "speedup_vs_reference" in x else "") for x in picks[:4]]
        cut = sum(1 for x in r.get("rows", []) if str(x.get("status", "")).startswith("cut"))
        return "; ".join(parts) + (f"; {cut} reference case(s) cut" if cut else "")
    if name == "train":
        return "; ".join(f"{k}: {v['samples_per_s_median']}/s ({v['of_model_only_pct']}%"
                         + (f", wait {v['data_wait_pct_median']}%" if "data_wait_pct_median" in v else "") + ")"
                         for k, v in r.get("variants", {}).items())
    if name == "evaluate":
        return f"{r.get('items')} items: {r.get('samples_per_s')} samples/s ({r.get('device')})"
    if name == "setup":
        return f"wheels: {', '.join(r.get('wheels', [])) or 'none'}; avloc {r.get('avloc')}"
    return ""


def table(results: dict) -> str:
    lines = ["| stage | status | seconds | numbers |", "| --- | --- | --- | --- |"]
    for name, r in results["stages"].items():
        lines.append(f"| {name} | {r.get('status')} | {r.get('seconds', '')} | {_key_numbers(name, r)} |")
    return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def orchestrate(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    site = work / "site"
    pythonpath = os.pathsep.join([str(site)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
    if args.dry_run:
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
    results = {"dry_run": args.dry_run, "inputs": str(args.inputs), "budget_s": args.budget, "stages": {}}
    t_start = time.time()
    log = open(out / "log.txt", "a", buffering=1)
    only = set(args.only.split(",")) if args.only else None
    overrides = dict((k, float(v)) for k, v in (item.split("=") for item in args.limits.split(",") if item))
    for name, limit in STAGES:
        if only and name not in only:
            continue
        limit = overrides.get(name, DRY_STAGE_S if args.dry_run else limit)
        left = args.budget - (time.time() - t_start)
        record = results["stages"][name] = {}
        if left < 5:
            record["status"] = "not run: out of time"
            continue
        limit = record["limit_s"] = max(1, int(min(limit, left)))
        result_path = work / f"{name}.json"
        result_path.unlink(missing_ok=True)
        ctx = {"inputs": str(Path(args.inputs).resolve()), "work": str(work), "site": str(site),
               "pythonpath": pythonpath, "dry_run": args.dry_run, "sizes": "dry" if args.dry_run else "gpu",
               "limit": limit, "result": str(result_path)}
        ctx_path = work / f"{name}.ctx.json"
        ctx_path.write_text(json.dumps(ctx))
        log.write(f"\n===== {name} (limit {limit} s) =====\n")
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--stage", name, "--ctx", str(ctx_path)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
        record["seconds"] = round(time.time() - t0, 1)
        if result_path.is_file():
            record.update(json.loads(result_path.read_text()))
        if rc is None:
            record["status"] = f"cut after {limit} s"
        elif rc != 0:
            record["status"] = f"failed (exit {rc}; see log.txt)"
        log.write(f"===== {name}: {record.get('status')} in {record['seconds']} s =====\n")
        _write_json(out / "results.json", results)
    results["total_seconds"] = round(time.time() - t_start, 1)
    _write_json(out / "results.json", results)
    text = table(results)
    (out / "table.md").write_text(text + "\n")
    log.close()
    print(text)
    return 0 if all(r.get("status") == "ok" for r in results["stages"].values()) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", default=str(REPO / "device-inputs"), help="the folder prepare.py wrote")
    parser.add_argument("--out", default=os.environ.get("OUT", "device-out"), help="where results.json, log.txt, "
                        "table.md go (default: $OUT)")
    parser.add_argument("--work", default="/tmp/avloc-device-work", help="scratch folder (linked data, stage files)")
    parser.add_argument("--dry-run", action="store_true", help="every stage at tiny sizes on CPU")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for all stages together (default {BUDGET_S}; {DRY_BUDGET_S} with --dry-run)")
    parser.add_argument("--limits", default="", help="per-stage limits, e.g. kernels=200,train=90 (seconds)")
    parser.add_argument("--only", default="", help="comma-separated stages to run (default: all)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--ctx", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.budget is None:
        args.budget = DRY_BUDGET_S if args.dry_run else BUDGET_S
    if args.stage:
        return run_stage(args.stage, Path(args.ctx))
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
