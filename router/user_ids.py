"""What a user id may be: 1-100 characters of ``A-Z a-z 0-9 _ : -``.

Ids travel in headers (``x-sm-user-id``) and metric labels, so the set is small
and safe in both: no spaces, no separators, no CR or LF.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

USER_ID_PATTERN = r"[A-Za-z0-9_:-]{1,100}"
USER_ID_RULE = "1-100 characters of A-Z a-z 0-9 _ : -"
_USER_ID_RE = re.compile(USER_ID_PATTERN)


def is_valid_user_id(value: str) -> bool:
    return _USER_ID_RE.fullmatch(value) is not None


def check_user_id(value: str) -> str:
    """``value`` if it is a valid user id; otherwise ValueError saying what one is."""
    if not is_valid_user_id(value):
        raise ValueError(f"invalid user id {value!r}: must be {USER_ID_RULE}")
    return value


UserId = Annotated[str, AfterValidator(check_user_id)]
"""A user id field in a pydantic model."""
