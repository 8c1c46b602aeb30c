"""The error the data layer raises for bad input."""


class DataError(ValueError):
    """Malformed or unusable input data. The message names the file, row/line or field."""
