"""Cell values shared by the readers: row labels, numbers and timestamps, ids, item titles.

Every problem raises :class:`DataError` naming the file, the line (or row) and the field,
what was found and what was expected.

- :func:`numeric_column`: a column as numbers, or (timestamps) as ISO-8601 dates; refuses
  NaN/inf, magnitudes no epoch time in any unit can have, dates outside the 64-bit nanosecond
  range, and columns that mix numbers with dates or dates with and without a time zone;
- :func:`natural_order`: id sort order, numeric when every id is an integer (of any size);
- :func:`unescape_entities`: ``&amp;``, ``&#39;``, ``&quot;`` ... in item titles decoded.
"""

from __future__ import annotations

import html
import re
from typing import NoReturn

import numpy as np
import pandas as pd

from padrec.data.errors import DataError

__all__ = ["MAX_ABS_TIMESTAMP", "natural_order", "numeric_column", "row_label", "unescape_entities"]

# No epoch time in seconds, ms, us or ns comes near 2**63 (ns since 1970 reach it in 2262).
MAX_ABS_TIMESTAMP = float(2**63)

_DATE_FORMS = (
    "epoch time in any unit, or a calendar date such as 2020-01-05, 2020-01-05T10:00:00 or "
    "2020-01-05T10:00:00+01:00; week and ordinal dates are not read"
)
_EXPECT_TIMES = "numbers (epoch time in any unit) or ISO-8601 dates such as 2020-01-05 or 2020-01-05T10:00:00"
# A time part followed by a zone: "...T10:00Z", "... 10:00:00.5+01:00", "T1000-0500".
_HAS_ZONE = r"[T ]\d{2}(?::?\d{2}){0,2}(?:[.,]\d+)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"
# Character references ended by ";" only: html.unescape alone also decodes "&not" in "&notes".
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def row_label(index: int, file_kind: str) -> str:
    """Human position of data row ``index`` (0-based): a CSV line (header = line 1) or a row."""
    return f"line {index + 2}" if file_kind == "csv" else f"row {index + 1}"


def _shown(values: pd.Series, i: int) -> object:
    """Value ``i`` of ``values`` for an error message (``None`` when missing)."""
    v = values.iloc[i]
    return None if v is pd.NaT or (isinstance(v, float) and np.isnan(v)) else v


def numeric_column(values: pd.Series, where: str, field: str, file_kind: str, allow_dates: bool) -> np.ndarray:
    """Column as finite numbers (dates -> int64 nanoseconds since the epoch); errors name the row.

    A text column is read as numbers when every value is one; otherwise, when ``allow_dates``
    (timestamps), as ISO-8601 dates when every value is one. Refused with :class:`DataError`:
    a value that is neither; NaN or infinite numbers (``nan``, ``inf``, ``1e400``); with
    ``allow_dates``, numbers of magnitude >= 2**63 (no epoch time in any unit) and dates
    outside 1677-09-22 .. 2262-04-11 (64-bit nanoseconds); a column mixing numbers and dates;
    dates with and without a time zone in one column (dates with zones are compared in UTC).
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{where}: field '{field}': expected numbers, got true/false values")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _dates_to_ns(values, where, field, file_kind)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return _check_numbers(values, values, where, field, file_kind, allow_dates)
    num = pd.to_numeric(values, errors="coerce")
    is_num = num.notna().to_numpy()
    if is_num.all():
        return _check_numbers(values, num, where, field, file_kind, allow_dates)
    rest = np.flatnonzero(~is_num)
    if not allow_dates:
        _raise_not_a_value(values, int(rest[0]), where, field, file_kind, False)
    if is_num.any():  # some numbers: the rest must be dates (a mixed column) or garbage
        try:
            some = pd.to_datetime(values.iloc[rest], errors="coerce", format="ISO8601", utc=True)
            is_date = np.zeros(len(values), dtype=bool)
            is_date[rest] = some.notna().to_numpy()
        except (ValueError, OverflowError):
            is_date = np.zeros(len(values), dtype=bool)
        if is_date.any():
            _raise_mixed(values, is_num, is_date, where, field, file_kind)
        _raise_not_a_value(values, int(rest[0]), where, field, file_kind, True)
    dates = _parse_dates(values, where, field, file_kind)
    neither = dates.isna().to_numpy()
    if neither.any():
        _raise_not_a_value(values, int(np.flatnonzero(neither)[0]), where, field, file_kind, True)
    return _dates_to_ns(dates, where, field, file_kind)


def _raise_not_a_value(values: pd.Series, i: int, where: str, field: str, file_kind: str, dates: bool) -> NoReturn:
    kind = f"a number or an ISO-8601 date ({_DATE_FORMS})" if dates else "a number"
    raise DataError(f"{where}: {row_label(i, file_kind)}, field '{field}': expected {kind}, got {_shown(values, i)!r}")


def _check_numbers(
    values: pd.Series, numbers: pd.Series, where: str, field: str, file_kind: str, timestamps: bool
) -> np.ndarray:
    """``numbers`` (read from ``values``) as an array, refusing missing, NaN, infinite and
    (``timestamps``) absurdly large values."""
    kind = "a number or an ISO-8601 date" if timestamps else "a number"
    missing = numbers.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{where}: {row_label(i, file_kind)}, field '{field}': expected {kind}, got {_shown(values, i)!r}"
        )
    out = numbers.to_numpy()
    if out.dtype == object:  # nullable numbers, or Python integers too large for 64 bits
        out = np.asarray(out.tolist())
        if out.dtype == object:
            out = out.astype(np.float64)
    if out.dtype.kind == "f":
        nonfinite = ~np.isfinite(out)
        if nonfinite.any():
            i = int(np.flatnonzero(nonfinite)[0])
            raise DataError(
                f"{where}: {row_label(i, file_kind)}, field '{field}': expected a finite number, got "
                f"{_shown(values, i)!r} (read as {out[i]})"
            )
    if timestamps and out.dtype.kind in "fiu":
        huge = np.abs(out.astype(np.float64)) >= MAX_ABS_TIMESTAMP
        if huge.any():
            i = int(np.flatnonzero(huge)[0])
            raise DataError(
                f"{where}: {row_label(i, file_kind)}, field '{field}': timestamp {_shown(values, i)!r} is no "
                f"epoch time in any unit (magnitude >= 2**63); expected {_EXPECT_TIMES}"
            )
    return out


def _parse_dates(values: pd.Series, where: str, field: str, file_kind: str) -> pd.Series:
    """ISO-8601 dates (NaT where a value is none); dates with zones are converted to UTC.

    Raises :class:`DataError` when some dates carry a time zone and others do not.
    """
    try:
        return pd.to_datetime(values, errors="coerce", format="ISO8601")
    except (ValueError, OverflowError) as exc:  # pandas refuses several zones, or naive + zoned
        zone = _zones(values)
        if zone.any() and not zone.all():
            i, j = int(np.flatnonzero(~zone)[0]), int(np.flatnonzero(zone)[0])
            raise DataError(
                f"{where}: {row_label(i, file_kind)}, field '{field}': the date {_shown(values, i)!r} has no "
                f"time zone but {row_label(j, file_kind)} has one ({_shown(values, j)!r}); expected ISO-8601 "
                "dates all with a time zone or all without"
            ) from None
        try:  # every date has a zone, several different ones: compare them in UTC
            return pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
        except (ValueError, OverflowError):
            raise DataError(
                f"{where}: field '{field}': cannot read the dates consistently ({exc}); expected {_EXPECT_TIMES}"
            ) from None


def _zones(values: pd.Series) -> np.ndarray:
    """Whether each text value ends in a time with a zone (``Z``, ``+01:00``)."""
    return values.astype(str).str.strip().str.contains(_HAS_ZONE, regex=True, case=False).to_numpy()


def _raise_mixed(
    values: pd.Series, is_num: np.ndarray, is_date: np.ndarray, where: str, field: str, file_kind: str
) -> NoReturn:
    """A column holding numbers and dates: name the first value of the rarer kind, and the other kind."""
    first_num, first_date = int(np.flatnonzero(is_num)[0]), int(np.flatnonzero(is_date)[0])
    if int(is_date.sum()) <= int(is_num.sum()):
        i, found, j, other, n_other = first_date, "the ISO-8601 date", first_num, "numbers", int(is_num.sum())
    else:
        i, found, j, other, n_other = first_num, "the number", first_date, "ISO-8601 dates", int(is_date.sum())
    raise DataError(
        f"{where}: {row_label(i, file_kind)}, field '{field}': mixed numbers and dates in column '{field}': "
        f"found {found} {_shown(values, i)!r} among {n_other} {other} (the first at {row_label(j, file_kind)}: "
        f"{_shown(values, j)!r}); expected one kind per column: all numbers (epoch time in any unit) or all "
        "ISO-8601 dates such as 2020-01-05 or 2020-01-05T10:00:00"
    )


def _dates_to_ns(dates: pd.Series, where: str, field: str, file_kind: str) -> np.ndarray:
    """Dates as int64 nanoseconds since 1970 (UTC for dates with a zone); refuses missing ones."""
    missing = dates.isna().to_numpy()
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"{where}: {row_label(i, file_kind)}, field '{field}': expected a number or an ISO-8601 date, got None"
        )
    idx = pd.DatetimeIndex(dates)
    try:
        return idx.as_unit("ns").asi8
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        lo, hi = pd.Timestamp.min, pd.Timestamp.max
        if idx.tz is not None:
            lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
        outside = np.flatnonzero((idx < lo) | (idx > hi))
        i = int(outside[0]) if len(outside) else 0
        raise DataError(
            f"{where}: {row_label(i, file_kind)}, field '{field}': the date {str(idx[i])!r} is outside the "
            f"range padrec can order ({lo.date()} .. {hi.date()}, 64-bit nanoseconds since 1970); expected "
            "a real interaction time"
        ) from None


def natural_order(ids: np.ndarray) -> np.ndarray:
    """Sort order of string ids: numeric when all are integers (of any size), else lexicographic."""
    try:
        keys = np.array([int(x) for x in ids], dtype=np.int64)
    except ValueError:
        keys = np.asarray(ids, dtype=str)
    except OverflowError:  # integers beyond 64 bits: order by Python int (stable: ties keep order)
        ints = [int(x) for x in ids]
        return np.asarray(sorted(range(len(ints)), key=ints.__getitem__), dtype=np.int64)
    return np.argsort(keys, kind="stable")


def unescape_entities(text: str) -> str:
    """``text`` with HTML character references decoded: ``&amp;`` -> ``&``, ``&#39;`` -> ``'``.

    Only references ended by ``;`` are decoded (with :func:`html.unescape`), so plain text such
    as ``"R&D"`` or ``"&notes"`` is kept as it is. One pass: ``&amp;amp;`` gives ``&amp;``.
    """
    if "&" not in text:
        return text
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
