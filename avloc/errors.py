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
