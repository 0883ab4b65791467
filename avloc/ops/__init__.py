"""Memory-bounded similarity kernels for the FNAC losses; ``dispatch`` picks the implementation."""

# The kernel implementations (kept here, torch-free, so the training config can offer them as choices).
IMPLS = ("auto", "triton", "torch", "reference")
