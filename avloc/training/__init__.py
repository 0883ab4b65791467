"""FNAC training: config (config.py), one rank's model/optimiser/loaders and step (trainer.py), the run
over epochs with its checkpoints (loop.py), resumable state (resume.py), validation (validation.py),
metrics (logs.py), torchrun/DDP helpers (distributed.py) and the ``--nproc`` launcher (launch.py).

Entry points: ``avloc train`` (avloc/commands/train.py) and ``torchrun ... -m avloc.training``.
"""
