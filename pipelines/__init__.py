"""avloc.pipelines: every line of DALI code. Import submodules only when DALI is wanted."""
