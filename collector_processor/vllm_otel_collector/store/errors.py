"""Which insert failures are worth retrying: the writer retries transient ones forever and dead-letters the rest.

Permanent (retrying the same rows can never succeed): clickhouse-connect's ``DataError`` (the rows cannot be packed
for their column types, e.g. ``Unable to create native array for column 'Timestamp'``), Python ``ValueError`` /
``TypeError`` / ``OverflowError`` raised while packing, and server errors whose code says the data itself is wrong
(:data:`PERMANENT_CODES`: parse errors, type mismatches, out-of-range values, violated constraints). Everything else
— connection refused or reset, timeouts, a table missing or read-only, too many parts, memory limits — is transient.
Source of the codes: ClickHouse ``src/Common/ErrorCodes.cpp``.
"""

from __future__ import annotations

import re
import struct

from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, DataError

PERMANENT_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    469,  # VIOLATED_CONSTRAINT
})
_CODE = re.compile(r"Code: (\d+)\.")


def is_permanent(exc: BaseException) -> bool:
    """True when inserting the same rows again cannot succeed (see module docstring)."""
    if isinstance(exc, DataError):
        return True
    if isinstance(exc, (ValueError, TypeError, OverflowError, struct.error)) and not isinstance(exc, ClickHouseError):
        return True
    if isinstance(exc, DatabaseError):
        m = _CODE.search(str(exc))
        return bool(m) and int(m.group(1)) in PERMANENT_CODES
    return False
