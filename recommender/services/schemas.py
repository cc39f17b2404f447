"""HTTP bodies of every API, one pydantic model each, unknown fields forbidden.

They are the services' ``input_spec``: BentoML validates a body once against them and
publishes them in the OpenAPI schema; the handlers turn them into the request path's
plain :class:`~recommender.serving.Request` objects without validating again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recommender.config import EventType
from recommender.errors import InputError
from recommender.feedback_rows import MAX_REQUEST_ID
from recommender.group_recs import GroupStrategy
from recommender.serving import GroupRequest, Request

__all__ = [
    "EmptyBody",
    "EncodeBody",
    "FeedbackBody",
    "FeedbackEvent",
    "Filters",
    "Knobs",
    "OnlineMetricsBody",
    "RecommendBatchBody",
    "RecommendBody",
    "RecommendGroupBody",
    "SimilarItemsBody",
    "check_ids",
    "check_text",
]

#: ``{"genres": ["Comedy", "Drama"]}``: attribute -> accepted values.
Filters = dict[str, list[str]]

#: Per-request tuning, e.g. ``{"diversity": 0.3, "kg_weight": 0.5}``.
Knobs = dict[str, Annotated[float, Field(allow_inf_nan=False)]]

Id = int | str


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendBody(_Body):
    """One recommendation request (also an element of ``recommend_batch``)."""

    user_id: Id | None = None
    history: list[Id] | None = None
    query: str | None = None
    k: Annotated[int, Field(description="number of items")] = 10
    exclude_seen: bool = True
    exclude_items: Annotated[list[Id] | None, Field(description="item ids never returned")] = None
    include: Filters | None = None
    exclude: Filters | None = None
    explain: bool = False
    rerank: bool = True
    knobs: Knobs | None = None
    exclude_shown: Annotated[
        int | None,
        Field(
            ge=1,
            le=100,
            description="also leave out the items shown to user_id in their last N lists",
        ),
    ] = None

    def to_request(self) -> Request:
        """The request path's :class:`Request`, text fields checked.

        ``exclude_shown`` is the service's to apply (it reads the impression log).
        """
        check_text(self.user_id, "user_id")
        check_text(self.query, "query")
        check_ids(self.history, "history")
        check_ids(self.exclude_items, "exclude_items")
        _check_filters(self.include, self.exclude)
        return Request(**{k: v for k, v in self if k != "exclude_shown"})


class RecommendBatchBody(_Body):
    requests: Annotated[list[RecommendBody], Field(max_length=1024)]


class RecommendGroupBody(_Body):
    """One list for a household or a team."""

    user_ids: Annotated[list[Id], Field(min_length=1)]
    k: int = 10
    strategy: GroupStrategy = "average"
    exclude_items: list[Id] | None = None
    include: Filters | None = None
    exclude: Filters | None = None
    explain: bool = False
    rerank: bool = True
    knobs: Knobs | None = None

    def to_request(self) -> GroupRequest:
        check_ids(self.user_ids, "user_ids")
        check_ids(self.exclude_items, "exclude_items")
        _check_filters(self.include, self.exclude)
        return GroupRequest(**dict(self))


class SimilarItemsBody(_Body):
    item_id: Id
    k: int = 10


class FeedbackEvent(_Body):
    """One interaction reported back by a client (same fields as the interaction log)."""

    user_id: Id
    item_id: Id
    timestamp: Annotated[Id, Field(description="unix seconds or an ISO-8601 time")]
    rating: Annotated[float | None, Field(allow_inf_nan=False)] = None
    weight: Annotated[float | None, Field(allow_inf_nan=False, ge=0)] = None
    type: Annotated[
        EventType | None,
        Field(description="what happened (none: a view); weighted by the model's event_weights"),
    ] = None
    request_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_REQUEST_ID,
            description="the request_id of the recommend answer the user reacted to",
        ),
    ] = None

    def checked(self, n: int) -> dict[str, Any]:
        """The event as a dict, text fields checked (field names ``events[n].x``)."""
        for name in ("user_id", "item_id", "timestamp", "request_id"):
            check_text(getattr(self, name), f"events[{n}].{name}")
        return dict(self)


class FeedbackBody(_Body):
    events: Annotated[list[FeedbackEvent], Field(min_length=1)]


class OnlineMetricsBody(_Body):
    """Which served lists to measure and how to slice them (see ``online_metrics``)."""

    by: Annotated[
        list[Literal["model", "arm", "user_group", "day"]],
        Field(max_length=4, description="slice columns; [] for one row"),
    ] = ["model", "arm"]
    since: Annotated[float | None, Field(description="unix seconds, served at or after")] = None
    until: Annotated[float | None, Field(description="unix seconds, served before")] = None
    model: str | None = None
    arm: str | None = None
    user_group: int | None = None
    day: Annotated[str | None, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None

    def filters(self) -> dict[str, Any]:
        names = ("model", "arm", "user_group", "day")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class EncodeBody(_Body):
    texts: Annotated[list[str], Field(min_length=1, max_length=1024)]


class EmptyBody(_Body):
    """APIs that take no arguments still reject stray fields."""


def check_text(value: Any, field: str) -> None:
    """Reject strings the pipeline cannot carry: lone surrogates and NUL.

    Lone surrogates (``"\\ud800"``) are valid JSON escapes but not encodable as UTF-8,
    so they would break the tokenizer and the JSON response; NUL breaks C-level
    string handling. Other unicode (RTL marks, combining characters, emoji) is fine.
    """
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise InputError(f"{field}: NUL characters are not allowed", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{field}: not valid unicode (lone surrogate at position {exc.start})", field=field
        ) from None


def check_ids(ids: list[Any] | None, field: str) -> None:
    """:func:`check_text` on each id, named ``field[n]``."""
    for n, v in enumerate(ids or []):
        check_text(v, f"{field}[{n}]")


def _check_filters(*specs: Filters | None) -> None:
    for name, spec in zip(("include", "exclude"), specs, strict=True):
        for col, values in (spec or {}).items():
            check_text(col, f"{name}.{col!r}")
            for v in values:
                check_text(v, f"{name}.{col}")
