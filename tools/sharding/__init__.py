"""``avloc shard``: raw clips -> WebDataset shards (discover, decode, build samples, write, resume).

Modules, in the order a run uses them: ``config`` (ShardConfig and its checks), ``discover``
(clip files), ``selection`` (which clips, which split), ``planning`` (the seeded shard plan),
``output`` (the folder, its lock, resume), ``distributors`` (local pool or Ray) running ``job``
(one shard: ``decode`` -> ``sample_builder`` -> ``writer``, rows via ``manifest``), ``report``.
"""

from avloc.tools.sharding.config import ShardConfig
from avloc.tools.sharding.report import format_report
from avloc.tools.sharding.run import run_shard

__all__ = ["ShardConfig", "format_report", "run_shard"]
