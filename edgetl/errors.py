"""One error type for user mistakes.

Raised anywhere a user's input (recipe, file, flag, bundle, host) is wrong; the CLI catches it once and
prints its one-line message with a non-zero exit. Anything else is a bug and keeps its traceback.
Import-light on purpose: the runtime uses it on devices without torch.
"""

from __future__ import annotations


class EdgetlError(Exception):
    """A user-facing error: the message is one line that names the file, field or value at fault."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = " ".join(str(message).split())  # keep it on one line
        self.hint = hint
        super().__init__(self.message if not hint else f"{self.message} ({hint})")


class UnverifiedError(EdgetlError):
    """A feature needs something this machine lacks (TensorRT, a GPU, a package)."""

    exit_code = 3


class StorageError(EdgetlError):
    """The file system refused a write (full disk, quota, read-only, permissions): the message names the file,
    what was needed when known, and says that no partial file was left."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path
