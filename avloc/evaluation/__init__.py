"""Benchmark evaluation with the published protocol (METHOD.md §5).

``avloc.evaluation.runner.evaluate(EvaluateOptions(...))`` runs one evaluation; its pieces live
in ``loading`` (items, batches, model), ``scoring``, ``baselines``, ``results`` and ``report``;
the benchmark readers in ``vggss``, ``flickr`` and ``avsbench`` (names in ``benchmarks``);
released FNAC / EZ-VSL weights are imported by ``model_loading``.

The single- and multi-source leaderboard sets (``benchmarks.LEADERBOARD``) are read by ``avgn``
and ``slavc`` into ``rows.RowItem`` rows (masks via ``masks``, duet audio via ``mixing``),
scored per source by ``rowscoring``, tabulated by ``leaderboard`` and run, with
``--benchmark all-available``, by ``leaderboard_runner`` (reports: ``leaderboard_report``).
"""
