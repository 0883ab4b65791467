"""Run shard jobs: locally over a process pool (default) or as Ray tasks (optional extra).

Both run the same module-level ``avloc.tools.sharding.job.run_shard_job`` on the same picklable
``ShardJob``; a job writes its shard files itself (atomically), so a job that is retried or
run twice leaves the same files. A Ray cluster needs ``--out`` on storage every node sees.
"""

from __future__ import annotations

import os
import sys
import queue as queue_mod
from typing import Callable, Iterator

from avloc.errors import AvlocError, InputError
from avloc.utils.system import first_line

DISTRIBUTORS = ("local", "ray")
# on_clip(n, failed): n more clips done, ``failed`` of them failed
ClipCallback = Callable[[int, int], None]

_progress_queue = None


def _die_with_parent(parent_pid) -> None:
    """Linux: get SIGKILL when the parent dies, so a killed run leaves no worker writing shards
    (and holding the output folder's lock) behind it."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except Exception:
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(progress_queue, torch_threads: int, parent_pid) -> None:
    global _progress_queue
    _die_with_parent(parent_pid)
    _progress_queue = progress_queue
    try:
        import torch

        torch.set_num_threads(torch_threads)
    except Exception:
        pass


def _report_clip(failed: bool) -> None:
    if _progress_queue is not None:
        _progress_queue.put(int(failed))


def _pool_job(job):
    from avloc.tools.sharding.job import run_shard_job

    return run_shard_job(job, on_clip=_report_clip)


class LocalDistributor:
    """Shard jobs over ``workers`` local processes (fork where available, so imports are shared)."""

    name = "local"

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))

    def run(self, jobs: list, on_clip: ClipCallback) -> Iterator:
        if not jobs:
            return
        if self.workers == 1 or len(jobs) == 1:
            yield from self._run_here(jobs, on_clip)
            return
        yield from self._run_pool(jobs, on_clip)

    @staticmethod
    def _run_here(jobs: list, on_clip: ClipCallback) -> Iterator:
        # in this process; one torch thread: the per-clip spectrogram is tiny and a thread
        # pool on a busy machine costs more than it saves
        import torch

        from avloc.tools.sharding.job import run_shard_job

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for job in jobs:
                yield run_shard_job(job, on_clip=lambda failed: on_clip(1, int(failed)))
        finally:
            torch.set_num_threads(threads)

    def _run_pool(self, jobs: list, on_clip: ClipCallback) -> Iterator:
        import concurrent.futures as cf
        import multiprocessing as mp

        from avloc.tools.sharding.sample_builder import preload

        preload()  # forked workers inherit the imported decoder/image modules instead of importing each
        # a forked child can hang in the shutdown of DALI pipelines it inherited (e.g. from an earlier
        # training run in the same process): start from a clean forkserver once DALI is loaded
        method = "fork" if "fork" in mp.get_all_start_methods() and "nvidia.dali" not in sys.modules else "spawn"
        if method == "spawn" and "forkserver" in mp.get_all_start_methods():
            method = "forkserver"
        ctx = mp.get_context(method)
        progress = ctx.Queue()
        n_procs = min(self.workers, len(jobs))
        executor = cf.ProcessPoolExecutor(max_workers=n_procs, mp_context=ctx, initializer=_init_worker,
                                          # a forkserver's children have the forkserver as their parent
                                          initargs=(progress, 1, os.getpid() if method == "fork" else None))
        try:
            pending = {executor.submit(_pool_job, job): job for job in jobs}
            while pending:
                done, _ = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                _drain(progress, on_clip)
                for fut in done:
                    job = pending.pop(fut)
                    try:
                        result = fut.result()
                    except cf.process.BrokenProcessPool:
                        raise AvlocError(f"a shard worker process died while writing {job.stem} (out of memory or "
                                         "killed?); finished shards are kept, rerun the same command to resume") from None
                    yield result
            _drain(progress, on_clip)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def _drain(progress, on_clip) -> None:
    while True:
        try:
            failed = progress.get_nowait()
        except (queue_mod.Empty, OSError, ValueError):
            return
        on_clip(1, failed)


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


def make_distributor(name: str, workers: int):
    if name == "local":
        return LocalDistributor(workers)
    if name == "ray":
        return RayDistributor()
    raise InputError(f"unknown distributor {name!r}; choose one of {DISTRIBUTORS}")
