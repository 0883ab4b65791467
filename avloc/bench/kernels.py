"""Benchmark: forward+backward time and peak extra memory of ``fnac_losses`` per implementation.

Sizes: B in {256, 1024, 4096, 8192}, HW in {49, 196}, D = 512 (quick mode: B <= 1024).
Variants: ``reference`` (einsum; materialises the B x B x HW volume; the baseline), ``torch``
(chunked), ``triton`` (CUDA only).

Time: interleaved rounds in this process (harness.interleave), median of the rounds. Where a step
takes tens of seconds on CPU only the single run of the memory measurement is timed (n = 1).

Memory, CPU: every (impl, size) runs once in a fresh subprocess. It allocates the inputs, runs
a tiny warm-up, resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` = 5), runs one
forward+backward and reads ``VmHWM``. Extra memory = peak RSS - RSS with the inputs allocated.
Reported twice: "total" (everything, including the two input-gradient buffers that every
implementation must return, as large as the inputs) and "workspace" (total minus those
buffers; the number the 1 GiB goal is about). RSS also counts allocator caching and
fragmentation, so a second step runs under torch.profiler(profile_memory=True) and the peak of
live tensor bytes from its allocation events is reported as "tensors" (minus the same
input-gradient buffers). Memory, CUDA: torch.cuda.max_memory_allocated
after reset_peak_memory_stats, minus the bytes allocated before the step (same two numbers).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from avloc.bench.harness import BenchContext, Record, skipped, summarize
from avloc.utils.progress import log

SCENARIO_TIME = "kernels.time"
SCENARIO_MEM = "kernels.memory"
DIM = 512
TAU = 0.03
# The reference is skipped where its similarity volume alone exceeds this (the CPU machine is
# shared; its backward holds about three volumes at once).
REFERENCE_VOLUME_LIMIT_BYTES = {"cpu": 2 * 2**30, "cuda": 12 * 2**30}
# CPU steps above this many multiply-adds are timed once (in the memory subprocess).
CPU_INTERLEAVE_MACS = 3.0e10
# On CPU the HW=196 map is run up to this batch only (B=4096 HW=196 is ~5 T multiply-adds, many minutes).
CPU_MAX_BATCH_HW196 = 1024


def _size_label(b: int, hw: int) -> str:
    return f"B={b} HW={hw} D={DIM}"


def _volume_bytes(b: int, hw: int) -> int:
    return b * b * hw * 4


def _step_macs(b: int, hw: int) -> float:
    return 3.0 * b * b * hw * DIM  # forward GEMM + two backward GEMMs


def _inputs(b: int, hw: int, device: str, seed: int = 0):
    import torch

    side = int(round(hw ** 0.5))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    visual = torch.nn.functional.normalize(torch.randn(b, DIM, side, side, generator=gen), dim=1).to(device)
    audio = torch.nn.functional.normalize(torch.randn(b, DIM, generator=gen), dim=1).to(device)
    return visual.requires_grad_(), audio.requires_grad_()


def _step(visual, audio, impl: str) -> None:
    import torch

    from avloc.losses import fnac_losses

    out = fnac_losses(visual, audio, tau=TAU, impl=impl)
    total = out["contrastive"] + 100.0 * (out["fns1"] + out["tns"] + out["fns2"])
    grads = torch.autograd.grad(total, (visual, audio))
    del grads, out, total


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_cpu_once(impl: str, b: int, hw: int, threads: int, with_allocations: bool = False) -> dict:
    """One forward+backward in this (fresh) process: peak RSS above the inputs, and its time."""
    import torch

    b, hw, threads = int(b), int(hw), int(threads)
    torch.set_num_threads(threads)
    small_v, small_a = _inputs(8, hw, "cpu")
    _step(small_v, small_a, impl)  # loads libraries and kernels outside the measurement
    del small_v, small_a
    visual, audio = _inputs(b, hw, "cpu")
    base = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    t0, c0 = time.perf_counter(), time.process_time()
    _step(visual, audio, impl)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    peak = _rss_kib("VmHWM")
    grad_bytes = (visual.numel() + audio.numel()) * 4
    total = (peak - base) * 1024
    result = {"total_bytes": total, "workspace_bytes": total - grad_bytes, "grad_bytes": grad_bytes, "seconds": seconds,
              "cpu_seconds": cpu_seconds, "method": "VmHWM - VmRSS(after inputs) in a fresh process, /proc/self/clear_refs=5 before the step"}
    if with_allocations:
        result["alloc_peak_bytes"] = allocation_peak_bytes(lambda: _step(visual, audio, impl))
    return result


def allocation_peak_bytes(fn) -> int:
    """Peak of live tensor bytes allocated inside ``fn`` (torch's CPU allocator events seen by the profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


# what the fresh process runs: one measurement, printed as one JSON line
_CHILD = ("import json, sys; from avloc.bench.kernels import measure_cpu_once; "
          "print(json.dumps(measure_cpu_once(*sys.argv[1:5], with_allocations=True)))")


def _measure_cpu_subprocess(impl: str, b: int, hw: int, threads: int) -> dict:
    cmd = [sys.executable, "-c", _CHILD, impl, str(b), str(hw), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory measurement of {impl} at {_size_label(b, hw)} failed: {last[:200]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure_cuda(impl: str, b: int, hw: int) -> dict:
    import torch

    visual, audio = _inputs(b, hw, "cuda")
    _step(visual, audio, impl)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    _step(visual, audio, impl)
    torch.cuda.synchronize()
    total = torch.cuda.max_memory_allocated() - base
    grad_bytes = (visual.numel() + audio.numel()) * 4
    return {"total_bytes": total, "workspace_bytes": total - grad_bytes, "grad_bytes": grad_bytes,
            "method": "torch.cuda.max_memory_allocated() - memory_allocated() before the step"}


def _timer(visual, audio, impl: str, device: str):
    cpu_ms: list = []

    def once() -> float:
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        _step(visual, audio, impl)
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        cpu_ms.append((time.process_time() - c0) * 1000.0)
        return (time.perf_counter() - t0) * 1000.0

    once.cpu_ms = cpu_ms
    return once


def _mem_records(size: str, impl: str, mem: dict, baseline: bool) -> list:
    mib = 2**20
    common = dict(unit="MiB", higher_is_better=False, baseline=baseline, spread="single run")
    out = []
    for kind in ("workspace", "total"):
        rec = summarize(SCENARIO_MEM, f"{size} [{kind}]", impl, [mem[f"{kind}_bytes"] / mib], **common)
        rec.extra = {"method": mem["method"], "input_grad_bytes": mem["grad_bytes"]}
        out.append(rec)
    if "alloc_peak_bytes" in mem:
        rec = summarize(SCENARIO_MEM, f"{size} [tensors]", impl, [(mem["alloc_peak_bytes"] - mem["grad_bytes"]) / mib], **common)
        rec.extra = {"method": "peak of live tensor bytes from torch.profiler memory events in a second step, "
                               "minus the input-gradient buffers", "input_grad_bytes": mem["grad_bytes"]}
        out.append(rec)
    return out


def run(ctx: BenchContext) -> list:
    return run_sizes(ctx)


def run_sizes(ctx: BenchContext, batches=None, hws=(49, 196)) -> list:
    import torch

    device = "cuda" if (ctx.device.startswith("cuda") and torch.cuda.is_available()) else "cpu"
    threads = torch.get_num_threads()
    if batches is None:
        batches = (256, 1024) if ctx.quick else (256, 1024, 4096, 8192)
    impls = ["reference", "torch", "triton"]
    records: list[Record] = []
    for hw in hws:
        for b in batches:
            size = _size_label(b, hw)
            macs = _step_macs(b, hw)
            runnable = {}
            for impl in impls:
                reason = None
                if impl == "triton" and device != "cuda":
                    reason = "not run: no GPU"
                elif impl == "reference" and _volume_bytes(b, hw) > REFERENCE_VOLUME_LIMIT_BYTES[device]:
                    reason = (f"skipped: would materialise the {_volume_bytes(b, hw) / 2**30:.1f} GiB similarity volume "
                              f"(about 3x that at peak); limit {REFERENCE_VOLUME_LIMIT_BYTES[device] / 2**30:.0f} GiB here")
                elif device == "cpu" and hw > 49 and b > CPU_MAX_BATCH_HW196:
                    reason = f"skipped on CPU: {macs / 1e12:.1f} T multiply-adds per step (minutes on this machine)"
                if reason:
                    for scen, unit in ((SCENARIO_TIME, "ms"), (SCENARIO_MEM, "MiB")):
                        records.append(skipped(scen, impl, size, reason, unit=unit, higher_is_better=False))
                else:
                    runnable[impl] = True
            if not runnable:
                continue
            log(f"bench: kernels {size} on {device}: {', '.join(runnable)}")
            mems = {}
            for impl in runnable:
                mems[impl] = _measure_cuda(impl, b, hw) if device == "cuda" else _measure_cpu_subprocess(impl, b, hw, threads)
                records += _mem_records(size, impl, mems[impl], impl == "reference")
            if device == "cpu" and macs > CPU_INTERLEAVE_MACS:
                for impl in runnable:
                    rec = summarize(SCENARIO_TIME, size, impl, [mems[impl]["seconds"] * 1000.0], unit="ms",
                                    higher_is_better=False, baseline=impl == "reference", spread="single run")
                    rec.extra = {"note": "one step, timed inside the memory subprocess",
                                 "cpu_ms": mems[impl].get("cpu_seconds", float("nan")) * 1000.0}
                    records.append(rec)
                continue
            visual, audio = _inputs(b, hw, device)
            rounds = 5 if macs < 1e10 else 3
            if ctx.quick:
                rounds = min(rounds, 3)
            timers = {impl: _timer(visual, audio, impl, device) for impl in runnable}
            times = ctx.interleave(timers, rounds=rounds, warmup=1, desc=f"bench kernels {size}")
            for impl, values in times.items():
                cpu = sorted(timers[impl].cpu_ms[-len(values):])
                records.append(summarize(SCENARIO_TIME, size, impl, values, unit="ms", higher_is_better=False,
                                         baseline=impl == "reference", threads=threads, cpu_ms_median=cpu[len(cpu) // 2]))
            del visual, audio
    return records

