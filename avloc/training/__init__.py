"""FNAC training: config (config.py), the loop (loop.py), checkpoint state (state.py), validation
(validation.py), metrics/progress (logs.py) and torchrun/DDP helpers (distributed.py).

Entry points: ``avloc train`` (avloc/commands/train.py) and ``torchrun ... -m avloc.train``.
"""
