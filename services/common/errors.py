"""Domain errors that carry their gRPC status.

Plain code raises these; the server's error interceptor turns them into the matching status code
(docs/ARCHITECTURE.md, "Status codes say what went wrong"). Anything else escaping a servicer
becomes INTERNAL with a generic message, never UNKNOWN, and its details stay in the server log.
"""

from __future__ import annotations

import grpc


class DistillError(Exception):
    """Base class: an error whose message is safe to show to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(DistillError, ValueError):
    """Bad input; the message names the field, line or allowed values."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DistillError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DistillError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DistillError):
    """The request is valid but the system is in the wrong state for it (or lacks a resource)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DistillError):
    """A compare-and-swap lost: the caller should re-read and retry."""

    code = grpc.StatusCode.ABORTED


class ResourceExhausted(DistillError):
    """Busy (e.g. a trainer at capacity) or over budget."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(DistillError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DistillError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(DistillError):
    """A dependency (teacher API, artifact store, another service) is down; retrying may help."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(DistillError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(DistillError):
    code = grpc.StatusCode.CANCELLED


class DataLoss(DistillError):
    """Stored bytes no longer match the sha256 recorded when they were written."""

    code = grpc.StatusCode.DATA_LOSS


class StartupRefused(Exception):
    """A service must not start (e.g. another gateway owns its job store): `python -m
    services.<name>` prints the reason and exits with status 1. Not an RPC error."""


# Every status a servicer answers besides OK, in one place: the codes of the errors above (the
# server's own refusals are among them: RESOURCE_EXHAUSTED past max_concurrent_rpcs or the
# message limit, UNAUTHENTICATED without the token). INTERNAL means a bug; nothing is UNKNOWN.
ANSWERED_CODES = frozenset(cls.code for cls in DistillError.__subclasses__())
