"""``python -m avloc.train`` / ``torchrun --nproc-per-node N -m avloc.train ...``: one training rank.

Takes the same options as ``avloc train`` (without --nproc: torchrun provides the ranks).
"""

from __future__ import annotations

import sys

import click

from avloc.errors import AvlocError


def main(argv=None) -> int:
    from avloc.commands.train import command

    try:
        command.main(args=argv, prog_name="avloc.train", standalone_mode=False)
    except AvlocError as err:
        click.echo(f"avloc: error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Abort:
        click.echo("avloc: interrupted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
