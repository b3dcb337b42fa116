"""The toolkit's exceptions.

Every error a user can cause derives from `FmfpError` and says what was wrong (the argument or file,
the value, what was expected) in one line. The CLI turns them into a one-line message and an exit
code without a traceback; library users can catch them like any `ValueError`.
"""


class FmfpError(ValueError):
    """Base class: a problem with the user's input, explained in the message."""

    exit_code = 1


class UsageError(FmfpError):
    """An invalid option value, config key or combination of options."""

    exit_code = 2


class DataError(FmfpError):
    """A dataset directory, file or array that cannot be used as it is."""

    exit_code = 1


class ModelError(FmfpError):
    """A model file that cannot be loaded or does not fit the data."""

    exit_code = 1
