"""User-facing errors: raised for the user's mistakes, printed as one line, exit code 1."""


class PipelineError(Exception):
    """A mistake in the user's config or data. The message names the key, file or row."""


class ConfigError(PipelineError):
    """An invalid configuration value (names the config key)."""


class DataError(PipelineError):
    """A malformed or insufficient data file or row (names the file and row)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type if the message is empty), for
    one-line errors that wrap a library's multi-line one."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]
