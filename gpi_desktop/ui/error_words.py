"""What the window says when something it started fails: one place, one wording.

A `GpiError` is the user's to act on and says so in one plain sentence: it is
shown as it is. Anything else is our bug: the window names what could not be
done, and says that the details (the traceback) are in the log file.
"""

from __future__ import annotations

from gpi_desktop.core.vocabulary.errors import GpiError

UNEXPECTED = "{failed}: something unexpected went wrong ({kind}); the details are in the log file."


def failure_sentence(error: BaseException, failed: str) -> str:
    """The sentence for `error`; `failed` says what could not be done ("The export could not be written")."""
    if isinstance(error, GpiError):
        return str(error)
    return UNEXPECTED.format(failed=failed, kind=type(error).__name__)
