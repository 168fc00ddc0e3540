"""The error tree: what is retried and what goes straight to the dead letters."""

from __future__ import annotations


class SagaworksError(Exception):
    """Base of every error the framework raises on purpose."""


class PermanentError(SagaworksError):
    """Retrying cannot help: the message goes straight to the dead letters."""


class InvalidMessageError(PermanentError):
    """Not JSON, an unknown type or version, a schema violation or a malformed envelope."""


class UnplaceableEvent(PermanentError):
    """A projection was given an event it cannot place in a stream (no stream position)."""


class MessageTooLarge(PermanentError):
    """The message body is larger than ``Settings.max_message_bytes``: refused unread."""


class CommandRejected(PermanentError):
    """A business rule refused the command (e.g. cancelling a confirmed order)."""


class ConcurrencyError(SagaworksError):
    """Another writer appended to the stream first; the command is re-decided and retried."""


class TransientError(SagaworksError):
    """A failure worth retrying (a dependency was briefly unavailable)."""
