"""CPU milliseconds per training sample of each loader, the load-robust companion of the loaders
scenario (on a machine shared with other jobs, wall-clock rates follow their load; CPU time much less).

Each loader runs in this process (folder / torch: num_workers=0; DALI: 2 pipeline threads) over a
folder made by ``avloc bench-throughput --scenario loaders --keep-workdir`` (its ``loaders-data``:
``folder``, ``shards`` at the training scale, ``shards-256`` in the earlier layout); the process CPU
time (every thread) is taken over batches 2..k of 256, after the first batch (start-up apart).
On c dedicated cores a loader's rate is bounded by c / (CPU s per sample).

    python benchmarks/loader_cpu_cost.py /tmp/avloc-bench-XXXX/loaders-data 4
"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from avloc.data import LoaderOptions, build_loader
root = sys.argv[1]
k = int(sys.argv[2]) if len(sys.argv) > 2 else 4
B = 256
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = {}
variants = [("folder (reference)", "folder", dict(backend="folder", num_workers=0)),
            ("torch", "shards", dict(backend="torch", num_workers=0)),
            ("dali-cpu", "shards", dict(backend="dali", num_workers=2)),
            ("dali-cpu, 256 frames", "shards-256", dict(backend="dali", num_workers=2))]
for rnd in range(2):
    for name, sub, opts in (variants if rnd == 0 else variants[::-1]):
        loader = build_loader(f"{root}/{sub}", "train", LoaderOptions(mode="train", batch_size=B, seed=rnd, **opts))
        loader.set_epoch(rnd)
        it = iter(loader)
        c_start, w_start = cpu(), time.perf_counter()
        next(it)
        c0, w0 = cpu(), time.perf_counter()
        n = 0
        for _ in range(k - 1):
            n += len(next(it)["key"])
        c1, w1 = cpu(), time.perf_counter()
        it.close()
        del it, loader
        out.setdefault(name, []).append({"cpu_ms_per_sample": 1000 * (c1 - c0) / n, "startup_cpu_s": c0 - c_start,
                                         "wall_s": w1 - w0, "samples": n})
        print(name, out[name][-1], flush=True)
print(json.dumps(out))
