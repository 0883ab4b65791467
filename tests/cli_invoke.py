"""``avloc`` run in-process through its real entry point (``avloc.cli.main``), for CliRunner.

``CliRunner().invoke(avloc_cli, [...])`` goes through the one place errors become exit codes
(``avloc.errors.run_click_command``), so a test sees what a user's shell sees: exit 2 and one
``avloc: error:`` line for wrong input, exit 1 for a run that could not complete.
"""

from __future__ import annotations


class _AvlocEntryPoint:
    name = "avloc"

    def main(self, args=(), prog_name=None, **_):
        from avloc.cli import main

        main(list(args))


avloc_cli = _AvlocEntryPoint()
