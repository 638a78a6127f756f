"""Numbers at the API boundary: each fits the column it is stored in or compared with.

A value the database cannot hold (an id beyond 64 bits, a count beyond PostgreSQL's 32-bit
INTEGER) would otherwise reach the driver and fail there as a 500; bounded here, it is a 400
naming the field. Body numbers are strict: JSON `true` or `"5"` is not a number (lax parsing
would store `true` as a price of 1), and floats must be finite.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import Field

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1  # PostgreSQL INTEGER columns
INT64_MAX = 2**63 - 1  # BIGINT ids on PostgreSQL; SQLite's INTEGER is 64-bit too
MAX_PAGE_SIZE = 100
# Far beyond any real balance or quota; keeps sums of stored amounts finite.
MAX_AMOUNT = 1_000_000_000.0

# Row ids: in a path, as an optional query filter, in a body.
PathId = Annotated[int, Path(ge=1, le=INT64_MAX)]
IdFilter = Annotated[int | None, Query(ge=1, le=INT64_MAX)]
Id = Annotated[int, Field(strict=True, ge=1, le=INT64_MAX)]

# Paging: `page` is bounded so that (page - 1) * page_size stays a 64-bit OFFSET. A larger
# `page_size` is not an error: it is served as MAX_PAGE_SIZE (see deps.page_params).
PageNumber = Annotated[int, Query(ge=1, le=INT32_MAX)]
PageSize = Annotated[
    int, Query(ge=1, description=f"items per page; more than {MAX_PAGE_SIZE} is served as {MAX_PAGE_SIZE}")
]

# Body integers stored in INTEGER columns.
Int32 = Annotated[int, Field(strict=True, ge=INT32_MIN, le=INT32_MAX)]
Count32 = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]

# Dollar amounts (balance, monthly quota): finite, non-negative, bounded.
Amount = Annotated[float, Field(strict=True, ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
