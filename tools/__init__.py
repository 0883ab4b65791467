"""avloc.tools: ``sharding`` (raw clips -> shards) and ``synth`` (synthetic clips and benchmark copies)."""
