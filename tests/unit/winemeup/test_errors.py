"""One error body shape (winemeup.api.ErrorBody) for router and runners, one status per error."""

from __future__ import annotations

import pytest

from winemeup import errors
from winemeup.api import ErrorBody
from winemeup.schema import FieldError


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.MalformedRequest("x"), 400, "malformed_request"),
        (errors.ValidationFailed([FieldError("features.ph", "must be a number")]), 422, "validation_error"),
        (errors.Unauthenticated("x"), 401, "unauthenticated"),
        (errors.Forbidden("x"), 403, "forbidden"),
        (errors.RouteNotFound("x"), 404, "not_found"),
        (errors.UnknownModel("x"), 404, "unknown_model"),
        (errors.MethodNotAllowed("x", ["GET"]), 405, "method_not_allowed"),
        (errors.PayloadTooLarge("x"), 413, "payload_too_large"),
        (errors.UnsupportedMediaType("x"), 415, "unsupported_media_type"),
        (errors.ModelUnavailable("svr", "down"), 503, "model_unavailable"),
        (errors.NotReady("x"), 503, "not_ready"),
        (errors.ServiceError("x"), 500, "internal_error"),
    ],
)
def test_status_code_and_body_shape(error: errors.ServiceError, status: int, code: str) -> None:
    assert error.status == status
    body = error.body()
    assert set(body) == {"error", "code", "details"}
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert ErrorBody.model_validate(body).code == code


def test_validation_error_lists_every_field() -> None:
    details = [FieldError(f"instances[{i}].ph", "must be a number, got string") for i in range(7)]
    body = errors.ValidationFailed(details).body()
    assert [d["field"] for d in body["details"]] == [f"instances[{i}].ph" for i in range(7)]
    assert body["error"].startswith("7 invalid fields")
    assert "and 2 more" in body["error"]


def test_model_unavailable_names_the_model() -> None:
    assert errors.ModelUnavailable("svr", "connection refused").message == (
        "model 'svr' is unavailable: connection refused"
    )


def test_extra_headers() -> None:
    assert (b"allow", b"GET, PUT") in errors.MethodNotAllowed("x", ["PUT", "GET"]).headers()
    assert errors.Unauthenticated("x").headers()[0][0] == b"www-authenticate"
    assert errors.UnsupportedContentEncoding("x").headers() == [(b"accept-encoding", b"identity")]
    assert errors.UnsupportedContentEncoding("x").status == 415


def test_router_and_runner_render_one_body() -> None:
    from services.runner.errors import BatchTooLargeError

    runner = BatchTooLargeError("too many rows", [FieldError("rows", "at most 3 rows per call, got 4")])
    router = errors.PayloadTooLarge("too many rows", [FieldError("rows", "at most 3 rows per call, got 4")])
    assert runner.body() == router.body()
    assert errors.NotReady("x").body() == {"error": "x", "code": "not_ready", "details": []}


def test_too_many_requests_says_when_to_retry() -> None:
    error = errors.TooManyRequests("over budget", 0.2, [(b"ratelimit-limit", b"10")])
    assert error.status == 429
    assert error.headers() == [(b"retry-after", b"1"), (b"ratelimit-limit", b"10")]
