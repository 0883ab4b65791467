"""Shard jobs over supervised local worker processes: a bad clip never stops the run.

Each worker runs whole shard jobs (``job.run_shard_job``) and tells the parent, over its own pipe,
which clip it is on. The parent watches every worker:

* a clip that runs longer than ``clip_timeout_s`` (a FIFO or a stalled network read while
  opening it, a decoder that never returns) gets its worker killed: ``clip_timeout``;
* memory: a clip whose frame size alone needs more than ``clip_memory_mb`` to decode is refused
  before decoding (``decode.check_frame_memory``), and a worker runs under an address-space bound
  of ``clip_memory_mb`` above what it holds at rest (``RLIMIT_AS``, inherited by its ffmpeg
  children): a clip that needs more fails inside the worker with ``memory_limit``
  (``sample_builder``); that worker then leaves (a library that ran out of memory may have
  left its state damaged) and is replaced like a lost one;
* a worker that dies on a clip (the kernel's OOM killer, a crash in a decoder library, a kill)
  is named with that clip: ``worker_died``.

The clip is recorded as failed, a fresh worker replaces the lost one and the shard is built again
with that clip marked failed (``ShardJob.known_failed``), so the run finishes with its manifest
and ``dataset.json``. A worker that dies between clips (while writing its shard's files) gets
the shard retried; a shard that loses ``MAX_UNNAMED_DEATHS`` workers that way stops the run.
Each worker leads its own process group, which its ffmpeg children join: a worker killed or lost
has its whole group killed, so no ffmpeg outlives it (and writes no frame file into /dev/shm
after it). Workers get SIGKILL when the run's process dies; an ffmpeg child of theirs then ends
at its next write to the closed pipe, and frame files of dead processes are removed at the next
start (``decode.remove_orphan_frames``).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import time
from multiprocessing.connection import wait
from typing import Callable, Iterator, Optional

from avloc.errors import AvlocError
from avloc.utils.atomic import remove_stale_temps

MAX_UNNAMED_DEATHS = 2
_POLL_S = 0.2


@dataclasses.dataclass(frozen=True)
class WorkerLimits:
    clip_timeout_s: float = 120.0  # one clip: open, probe, decode, build
    clip_memory_mb: Optional[int] = 2048  # address space a clip may add to its worker; None: unbounded


def _die_with_parent(parent_pid) -> None:
    """Linux: SIGKILL when the parent dies, so a killed run leaves no worker behind it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def become_group_leader() -> None:
    """Lead a new process group (the worker's ffmpeg children join it), out of the terminal's."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass


def kill_process_group(pid: int) -> None:
    """SIGKILL every process of the group ``pid`` leads (also after the leader itself died)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _address_space_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def bound_memory(extra_mb: Optional[int]) -> None:
    """Cap this process's address space at what it uses now plus ``extra_mb`` (children inherit it).
    glibc's per-thread malloc arenas reserve 64 MiB of address space each; two are plenty here."""
    if extra_mb is None:
        return
    import resource

    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX
    except Exception:
        pass
    now = _address_space_bytes()
    if now is None:
        return
    limit = now + int(extra_mb) * 2**20
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _worker_main(jobs, messages, limits: WorkerLimits, parent_pid, umask: int) -> None:
    from avloc.tools.sharding.job import run_shard_job
    from avloc.utils.system import first_line

    _die_with_parent(parent_pid)
    os.umask(umask)  # the run's, also when a forkserver (started earlier, elsewhere) forked this worker
    become_group_leader()
    try:
        import torch

        torch.set_num_threads(1)  # the per-clip spectrogram is tiny; a thread pool costs more than it saves
    except Exception:
        pass
    from avloc.tools.sharding.sample_builder import preload

    preload()  # first calls reserve memory (allocator arenas): part of the resting size, not of a clip
    bound_memory(limits.clip_memory_mb)
    while True:
        try:
            job = jobs.recv()
        except EOFError:
            return
        if job is None:
            return

        def report(outcome) -> None:
            if outcome.out_of_memory and outcome.key not in job.known_failed:
                messages.send(("memory", outcome.detail))
                os._exit(3)  # a fresh worker rebuilds the shard with this clip marked failed
            messages.send(("clip_done", outcome.status != "ok"))

        try:
            result = run_shard_job(job, on_clip=report,
                                   on_start=lambda key: messages.send(("clip", key)), timeout_s=limits.clip_timeout_s,
                                   memory_mb=limits.clip_memory_mb)
        except BaseException as exc:  # disk full, folder removed, a bug: the parent stops the run with it
            messages.send(("error", f"{type(exc).__name__}: {first_line(exc)}" if not isinstance(exc, AvlocError)
                           else str(exc)))
            return
        messages.send(("result", result))


class _Worker:
    def __init__(self, ctx, limits: WorkerLimits, parent_pid):
        jobs_r, self.jobs = ctx.Pipe(duplex=False)
        self.messages, messages_w = ctx.Pipe(duplex=False)
        umask = os.umask(0o022)
        os.umask(umask)
        self.proc = ctx.Process(target=_worker_main, args=(jobs_r, messages_w, limits, parent_pid, umask), daemon=True)
        self.proc.start()
        jobs_r.close()
        messages_w.close()
        self.job = None
        self.clip: Optional[str] = None
        self.clip_since = 0.0
        self.reported = 0  # clips of the current attempt at ``job`` reported so far
        self.memory_detail: Optional[str] = None  # the current clip went over the memory bound

    def give(self, job) -> None:
        self.job, self.clip, self.reported = job, None, 0
        self.jobs.send(job)

    def kill(self) -> None:
        """The worker and its children (an ffmpeg it started), also when the worker already died."""
        kill_process_group(self.proc.pid)
        self.proc.join()

    def close(self) -> None:
        for conn in (self.jobs, self.messages):
            conn.close()


def _signal_name(exitcode) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class SupervisedPool:
    """Run shard jobs on ``workers`` supervised processes; yields each job's result as it finishes."""

    def __init__(self, workers: int, limits: WorkerLimits, ctx, parent_pid):
        self.n = max(1, int(workers))
        self.limits = limits
        self.ctx = ctx
        self.parent_pid = parent_pid

    def run(self, jobs: list, on_clip: Callable[[int, int], None]) -> Iterator:
        queue = collections.deque(jobs)
        known_failed: dict = {}  # stem -> {key: (reason, detail)}
        forwarded: dict = {}  # stem -> clips reported to on_clip (an attempt repeats the earlier ones)
        unnamed_deaths: dict = {}
        workers = [_Worker(self.ctx, self.limits, self.parent_pid) for _ in range(min(self.n, len(jobs)))]
        try:
            while queue or any(w.job is not None for w in workers):
                for w in workers:
                    if w.job is None and queue:
                        job = queue.popleft()
                        w.give(dataclasses.replace(job, known_failed=dict(known_failed.get(job.stem, {}))))
                wait([w.messages for w in workers] + [w.proc.sentinel for w in workers], timeout=_POLL_S)
                for i, w in enumerate(list(workers)):
                    result = self._drain(w, forwarded, on_clip)
                    if result is not None:
                        yield result
                    dead, lost, late = self._check(w, known_failed, forwarded, unnamed_deaths, on_clip)
                    if late is not None:
                        yield late
                    if lost is not None:
                        queue.appendleft(lost)
                    if dead:  # lost on a clip, or left after one: replaced while work remains
                        w.kill()  # what it started (an ffmpeg) goes with it
                        w.close()
                        workers.remove(w)
                        if queue:
                            workers.append(_Worker(self.ctx, self.limits, self.parent_pid))
        finally:
            for w in workers:
                try:
                    w.jobs.send(None)
                except OSError:
                    pass
            deadline = time.monotonic() + 5.0
            for w in workers:
                w.proc.join(max(0.0, deadline - time.monotonic()))
                w.kill()
                w.close()

    def _drain(self, w: _Worker, forwarded: dict, on_clip):
        """Handle the worker's messages; returns a finished job's result."""
        result = None
        try:
            while w.messages.poll():
                kind, value = w.messages.recv()
                if kind == "clip":
                    w.clip, w.clip_since = value, time.monotonic()
                elif kind == "clip_done":
                    w.clip = None
                    w.reported += 1
                    if w.reported > forwarded.get(w.job.stem, 0):
                        forwarded[w.job.stem] = w.reported
                        on_clip(1, int(value))
                elif kind == "memory":
                    w.memory_detail = value
                elif kind == "result":
                    result, w.job = value, None
                elif kind == "error":
                    raise AvlocError(f"building shard {w.job.stem} failed: {value}; finished shards are kept, "
                                     "rerun the same command to resume")
        except (EOFError, OSError):
            pass  # the worker died; _check handles it
        return result

    def _check(self, w: _Worker, known_failed: dict, forwarded: dict, unnamed_deaths: dict, on_clip):
        """Kill a worker whose clip ran out of time; handle a lost worker. Returns (dead, the job to run
        again, a result it sent just before dying); ``dead`` is decided once here, so a worker dying
        meanwhile is handled on the next round."""
        timed_out = (w.clip is not None and w.proc.is_alive()
                     and time.monotonic() - w.clip_since > self.limits.clip_timeout_s)
        if timed_out:
            w.kill()
        if w.proc.is_alive():
            return False, None, None
        late = self._drain(w, forwarded, on_clip)  # what it said just before it died counts
        job = w.job
        if job is None:  # died idle (or right after finishing its job): nothing lost
            return True, None, late
        remove_stale_temps(job.out, f".{job.stem}.*.tmp")  # the lost attempt's unfinished shard files
        if w.clip is None:
            unnamed_deaths[job.stem] = unnamed_deaths.get(job.stem, 0) + 1
            if unnamed_deaths[job.stem] > MAX_UNNAMED_DEATHS:
                raise AvlocError(f"a shard worker process died ({_signal_name(w.proc.exitcode)}) while writing "
                                 f"{job.stem}, {unnamed_deaths[job.stem]} times; finished shards are kept, rerun the "
                                 "same command to resume")
            return True, job, None
        task = next(t for t in job.tasks if t.key == w.clip)
        if w.memory_detail is not None:
            reason, detail = "memory_limit", w.memory_detail
        elif timed_out:
            reason, detail = "clip_timeout", (f"opening and decoding {task.rel_path} took longer than "
                                              f"{self.limits.clip_timeout_s:g} s (--clip-timeout); its worker was killed")
        else:
            reason, detail = "worker_died", (f"the worker building {task.rel_path} died "
                                             f"({_signal_name(w.proc.exitcode)}; out of memory?) and was replaced")
        from avloc.utils.progress import warn

        warn(f"avloc shard: {task.rel_path}: {reason}: {detail}")
        known_failed.setdefault(job.stem, {})[w.clip] = (reason, detail)
        position = w.reported + 1  # this clip's place in the job's report order
        if position > forwarded.get(job.stem, 0):
            forwarded[job.stem] = position
            on_clip(1, 1)
        return True, job, None
