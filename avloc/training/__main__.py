"""``python -m avloc.training`` / ``torchrun --nproc-per-node N -m avloc.training ...``: one training rank.

Takes the same options as ``avloc train`` (without --nproc: torchrun provides the ranks).
"""

from __future__ import annotations

import sys

from avloc.errors import run_click_command


def main(argv=None) -> int:
    from avloc.commands.train import command

    return run_click_command(command, argv, "avloc.training")


if __name__ == "__main__":
    sys.exit(main())
