"""avloc.tools: the sharding machinery and the synthetic-clip generator."""
