"""The toolkit's exceptions.

Every error a user can cause derives from `FmfpError` and says what was wrong (the argument or file,
the value, what was expected) in one line. The CLI turns them into a one-line message and an exit
code without a traceback; library users can catch them like any `ValueError`.
"""


class FmfpError(ValueError):
    """Base class: a problem with the user's input, explained in the message.

    `parameters` maps each text of the message that names a parameter of the raising function
    ("resume=True", "dataset=NAME") to that parameter's name, so that an application can say it
    its own way (the CLI: its flags) with `spelled`, replacing exactly those texts.
    """

    exit_code = 1

    def __init__(self, message, parameters=None):
        super().__init__(message)
        self.parameters = dict(parameters or {})

    def spelled(self, spell):
        """The message with each declared parameter text replaced by `spell(name, text)`."""
        message = str(self)
        for text, name in self.parameters.items():
            message = message.replace(text, spell(name, text))
        return message


class UsageError(FmfpError):
    """An invalid option value, config key or combination of options."""

    exit_code = 2


class DataError(FmfpError):
    """A dataset directory, file or array that cannot be used as it is."""

    exit_code = 1


class ModelError(FmfpError):
    """A model file that cannot be loaded or does not fit the data."""

    exit_code = 1


class StorageError(FmfpError):
    """An output that could not be written: the disk, a quota or the file-size limit is full."""

    exit_code = 1


# errno values and TensorFlow messages that mean "no room to write"
_FULL_ERRNOS = (28, 27, 122)  # ENOSPC, EFBIG, EDQUOT
_FULL_MESSAGES = ("No space left on device", "File too large", "Disk quota exceeded")


def is_storage_full(error):
    """True when `error` (an OSError or a TensorFlow OpError) says there was no room to write."""
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return True
    return any(message in str(error) for message in _FULL_MESSAGES)


def storage_full_reason(error):
    text = str(error)
    for message in _FULL_MESSAGES:
        if message in text:
            return message.lower()
    return getattr(error, "strerror", None) or "no room to write"


class Interrupted(Exception):
    """A job stopped by SIGTERM/SIGINT after keeping its work (a checkpoint, finished cells);
    not an FmfpError: no input was wrong. `parameters` as in `FmfpError`."""

    def __init__(self, message, parameters=None):
        super().__init__(message)
        self.parameters = dict(parameters or {})

    spelled = FmfpError.spelled
