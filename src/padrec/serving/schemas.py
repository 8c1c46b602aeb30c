"""Request and response bodies of the HTTP service (pydantic models; strict types, no extra
fields, bounded sizes), so every malformed request is a 422 naming the field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# bounds of one request (also in the OpenAPI schema)
MAX_HISTORY = 1000
MAX_BATCH = 256
MAX_K = 1000
MAX_FILTER = 100_000
MAX_NEW_ITEMS = 1000
MAX_TEXT = 10_000
MAX_ID = 200


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Options(Strict):
    k: int = Field(10, ge=1, le=MAX_K, description="how many items to return")
    exclude_history: bool | None = Field(None, description="drop the history's items (null: the run's protocol)")
    allow: list[str] | None = Field(None, max_length=MAX_FILTER, description="rank only these items (ids or titles)")
    deny: list[str] | None = Field(None, max_length=MAX_FILTER, description="never return these items")
    explain: bool = Field(True, description="return each expert's share of every score")


class RecommendRequest(Options):
    history: list[str] = Field(
        min_length=1, max_length=MAX_HISTORY, description="item ids or exact titles, oldest first"
    )


class BatchRequest(Options):
    histories: list[list[str]] = Field(min_length=1, max_length=MAX_BATCH, description="several histories")


class ScoredItem(BaseModel):
    id: str
    title: str
    score: float
    new: bool = Field(description="added through POST /items, not seen in training")
    parts: dict[str, float] | None = Field(None, description="each expert's share; they sum to the score")


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    latency_ms: float
    history: list[str] = Field(description="the history as resolved item ids")


class BatchResponse(BaseModel):
    results: list[RecommendResponse]
    latency_ms: float


class NewItemBody(Strict):
    id: str = Field(min_length=1, max_length=MAX_ID, pattern=r"^\S(.*\S)?$", description="the item's id")
    title: str = Field("", max_length=MAX_TEXT)
    fields: dict[str, str] = Field(default_factory=dict, max_length=50, description="other text fields")
    embedding: list[float] | None = Field(None, max_length=65_536, description="a ready text embedding")


class ItemsRequest(Strict):
    items: list[NewItemBody] = Field(min_length=1, max_length=MAX_NEW_ITEMS)


class ItemOut(BaseModel):
    id: str
    title: str
    new: bool
    created: bool | None = None


class ItemsResponse(BaseModel):
    items: list[ItemOut]
    num_items: int
    seconds: float


class SearchResponse(BaseModel):
    items: list[ItemOut]


class ErrorResponse(BaseModel):
    error: str
    fields: list[str] = Field(default_factory=list)
