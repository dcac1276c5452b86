"""User-facing errors: raised for the user's mistakes, printed as one line, exit code 1."""


class PipelineError(Exception):
    """A mistake in the user's config or data. The message names the key, file or row."""


class ConfigError(PipelineError):
    """An invalid configuration value (names the config key)."""


class DataError(PipelineError):
    """A malformed or insufficient data file or row (names the file and row)."""
