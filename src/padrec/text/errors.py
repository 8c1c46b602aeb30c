"""Errors raised by the text-embedding layer."""

from __future__ import annotations


class TextError(ValueError):
    """Item texts or embeddings are unusable (missing texts, NaN rows, wrong shapes, bad files).

    The message names the file, field or item ids concerned and what was expected.
    """


class MissingDependencyError(ImportError):
    """An optional package an encoder needs is not installed; the message gives the pip command."""

    def __init__(self, package: str, pip: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package '{package}', which is not installed; install it with: {pip}"
        )
        self.package = package
        self.pip = pip


class EncoderRequestError(TextError):
    """A remote embedding endpoint failed or answered with something that is not an embedding list."""
