"""What ``avloc bench-throughput`` runs: one harness (``harness``), one result writer
(``results``) and one module per scenario (``shard``, ``loaders``, ``kernels``, ``train``,
``evaluate``), each with ``run(ctx) -> list[Record]``. The scripts that record results files
live in ``benchmarks/`` at the repository root.
"""
