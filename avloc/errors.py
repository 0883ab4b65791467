"""Errors that reach the user as one line and an exit code, never a traceback.

Library code raises these; the CLI (avloc.cli) prints ``avloc: error: <message>`` and exits
with ``exit_code``. Exit 2 means the user's input (arguments, paths, config) is wrong;
exit 1 means the run itself could not complete.
"""


class AvlocError(Exception):
    """A failure the user can act on; the message is the whole story (one line)."""

    exit_code = 1


class InputError(AvlocError):
    """Wrong arguments, paths, layouts or config: exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """Several config problems reported at once."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("invalid config: " + "; ".join(self.problems))


INTERRUPTED_EXIT_CODE = 130


def report_error(err: BaseException) -> int:
    """Print one line for an AvlocError or an interrupt and return its exit code."""
    import click

    if isinstance(err, AvlocError):
        click.echo(f"avloc: error: {err}", err=True)
        return err.exit_code
    click.echo("avloc: interrupted", err=True)
    return INTERRUPTED_EXIT_CODE


def run_click_command(command, argv, prog_name: str) -> int:
    """Run a click command and map every failure to one stderr line and an exit code.

    The single place where errors become exit codes: AvlocError -> its ``exit_code`` (2 for the
    user's input, 1 for a run that could not complete); click usage errors -> 2; Ctrl-C -> 130.
    Used by ``avloc`` and by ``python -m avloc.training`` (torchrun's entry point).
    """
    import click

    try:
        result = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        return report_error(KeyboardInterrupt())
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else prog_name
        click.echo(f"avloc: error: {exc.format_message()} (see '{where} --help')", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"avloc: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except AvlocError as err:
        return report_error(err)
    # Without standalone mode, click returns the code of a ctx.exit() (the group's error mapping).
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
