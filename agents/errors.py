"""What the application reports to its user: one line each, and the exit code it maps to.

`UsageError` is anything the user can fix by changing the command, the run
directory or the machine (a bad flag, a run that cannot be resumed, a
directory that cannot be written): exit code 2. `NonFiniteError` is a loss that
became NaN or inf: exit code 1.
"""

EXIT_USAGE = 2
EXIT_NONFINITE = 1


class UsageError(ValueError):
  """A bad choice or value from the user: the CLI prints it in one line, exit code 2."""


class NonFiniteError(RuntimeError):
  """A loss became NaN or inf: training stops; the message says which checkpoint is kept."""
