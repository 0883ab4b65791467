"""Run shard jobs: locally over a process pool (default) or as Ray tasks (optional extra).

Both run the same module-level ``avloc.tools.sharding.job.run_shard_job`` on the same picklable
``ShardJob``; a job writes its shard files itself (atomically), so a job that is retried or
run twice leaves the same files. A Ray cluster needs ``--out`` on storage every node sees.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

from avloc.errors import AvlocError, InputError
from avloc.utils.processes import worker_start_method
from avloc.utils.system import first_line

DISTRIBUTORS = ("local", "ray")
# on_clip(n, failed): n more clips done, ``failed`` of them failed
ClipCallback = Callable[[int, int], None]

class LocalDistributor:
    """Shard jobs over ``workers`` supervised local processes (``supervisor``): a clip that hangs,
    runs away with memory or kills its worker is recorded as failed and the run goes on. Fork
    where available, so the imported decoder modules are shared."""

    name = "local"

    def __init__(self, workers: int, limits=None):
        from avloc.tools.sharding.supervisor import WorkerLimits

        self.workers = max(1, int(workers))
        self.limits = limits or WorkerLimits()

    def run(self, jobs: list, on_clip: ClipCallback) -> Iterator:
        import multiprocessing as mp

        from avloc.tools.sharding.sample_builder import preload
        from avloc.tools.sharding.supervisor import SupervisedPool

        if not jobs:
            return
        preload()  # forked workers inherit the imported decoder/image modules instead of importing each
        method = worker_start_method()
        # a forkserver's children have the forkserver as their parent
        pool = SupervisedPool(self.workers, self.limits, mp.get_context(method),
                              os.getpid() if method == "fork" else None)
        yield from pool.run(jobs, on_clip)


class RayDistributor:
    """Shard jobs as Ray tasks (``ray.init(address)``: RAY_ADDRESS or a local instance)."""

    name = "ray"

    def __init__(self, address=None, max_retries: int = 2):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise InputError("--distributor ray needs Ray, which is not installed: pip install 'avloc[ray]'") from None
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.max_retries = max_retries

    def run(self, jobs: list, on_clip: ClipCallback) -> Iterator:
        import ray

        from avloc.tools.sharding.job import run_shard_job

        if not jobs:
            return
        if not ray.is_initialized():
            ray.init(address=self.address, ignore_reinit_error=True, log_to_driver=False)
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(run_shard_job)
        refs = {remote.remote(job): job for job in jobs}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(done[0])
            try:
                result = ray.get(done[0])
            except Exception as exc:
                raise AvlocError(f"Ray task for shard {job.stem} failed: {first_line(exc)}; "
                                 "finished shards are kept, rerun to resume") from None
            on_clip(len(job.tasks), result.n_failed)
            yield result


def make_distributor(name: str, workers: int, limits=None):
    if name == "local":
        return LocalDistributor(workers, limits)
    if name == "ray":
        return RayDistributor()
    raise InputError(f"unknown distributor {name!r}; choose one of {DISTRIBUTORS}")
