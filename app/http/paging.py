"""The parameters every list route takes."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

# Every list route takes these: an opaque cursor from the previous page, and a page size.
Cursor = Annotated[str | None, Parameter(max_length=200, description="next_cursor of the previous page")]
Limit = Annotated[int, Parameter(ge=1, le=100)]
