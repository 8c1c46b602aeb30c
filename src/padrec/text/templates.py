"""Turn an item table's fields into one text per item.

A template is either a builtin name or a template string over the item table's columns:

* ``"title"`` -- the title alone (what PAD encodes).
* ``"faerec"`` -- a labelled attribute text over name/title, brand, price, categories and
  description (FAERec-style), leaving out every field the item or the table lacks.
* a template string such as ``"{title} by {brand}"`` or ``"{title}[ by {brand}][, {price}]"``:

  - ``{field}``   required: an item whose value is missing gets no text at all;
  - ``{field?}``  optional: replaced by ``""`` when missing;
  - ``[ ... ]``   optional segment: left out whole when any field inside it is missing;
  - ``{{ }} [[ ]]`` literal braces / brackets.

A value is missing when it is ``""``, whitespace, ``None`` or NaN. Items that end up with no
text (a required field missing, or an empty rendering) are reported in
:attr:`RenderedTexts.missing` with the reason; what happens to them is the caller's choice
(``TextConfig.on_missing``).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from padrec.text.errors import TextError

BUILTIN_TEMPLATES = ("title", "faerec")

# FAERec attribute template: (label, candidate columns in order of preference).
_FAEREC_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Title", ("title", "name")),
    ("Brand", ("brand",)),
    ("Price", ("price",)),
    ("Categories", ("categories", "category")),
    ("Description", ("description",)),
)
# Bump when the faerec rendering changes so cached embeddings of the old text are not mixed in.
_FAEREC_VERSION = "faerec-v1"


@dataclass(frozen=True)
class _Literal:
    text: str


@dataclass(frozen=True)
class _Field:
    name: str
    optional: bool


@dataclass(frozen=True)
class _Segment:
    parts: tuple[_Literal | _Field, ...]


_Part = _Literal | _Field | _Segment


@dataclass
class RenderedTexts:
    """One text per internal item id.

    Attributes:
        texts: length N+1; ``texts[0] == ""`` (padding); ``""`` for items without text.
        missing: internal id -> reason, for every real item (1..N) that has no text.
        template_key: canonical description of the template (recorded in caches).
    """

    texts: list[str]
    missing: dict[int, str] = field(default_factory=dict)
    template_key: str = ""


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip() == ""


def _as_text(value: Any) -> str:
    return str(value).strip()


def _flatten_list_literal(value: str) -> str:
    """``"['Grocery', ['Snacks']]"`` -> ``"Grocery, Snacks"``; other strings unchanged."""
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return text
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif not _is_missing(v):
            s = str(v).strip()
            if s not in out:
                out.append(s)

    walk(parsed)
    return ", ".join(out)


def parse_template(template: str) -> tuple[_Part, ...]:
    """Parse a template string into literal, field and optional-segment parts.

    Raises:
        TextError: unbalanced braces/brackets, an empty field name, nested segments, or no
            field at all.
    """
    parts: list[_Part] = []
    seg: list[_Literal | _Field] | None = None
    buf: list[str] = []
    i, n = 0, len(template)

    def flush() -> None:
        if buf:
            target = seg if seg is not None else parts
            target.append(_Literal("".join(buf)))
            buf.clear()

    while i < n:
        ch = template[i]
        nxt = template[i + 1] if i + 1 < n else ""
        if ch in "{}[]" and nxt == ch:
            buf.append(ch)
            i += 2
            continue
        if ch == "{":
            end = template.find("}", i + 1)
            if end < 0:
                raise TextError(f"template {template!r}: '{{' at position {i} has no closing '}}'")
            name = template[i + 1 : end].strip()
            optional = name.endswith("?")
            name = name.rstrip("?").strip()
            if not name or "{" in name:
                raise TextError(f"template {template!r}: empty or malformed field name at position {i}")
            flush()
            (seg if seg is not None else parts).append(_Field(name, optional))
            i = end + 1
        elif ch == "}":
            raise TextError(f"template {template!r}: unmatched '}}' at position {i} (write '}}}}' for a literal)")
        elif ch == "[":
            if seg is not None:
                raise TextError(f"template {template!r}: optional segments '[...]' cannot be nested (position {i})")
            flush()
            seg = []
            i += 1
        elif ch == "]":
            if seg is None:
                raise TextError(f"template {template!r}: unmatched ']' at position {i} (write ']]' for a literal)")
            flush()
            parts.append(_Segment(tuple(seg)))
            seg = None
            i += 1
        else:
            buf.append(ch)
            i += 1
    if seg is not None:
        raise TextError(f"template {template!r}: '[' opened but never closed")
    flush()
    if not any(
        isinstance(p, _Field) or (isinstance(p, _Segment) and any(isinstance(q, _Field) for q in p.parts))
        for p in parts
    ):
        raise TextError(
            f"template {template!r}: has no {{field}} placeholder; use a builtin "
            f"({', '.join(BUILTIN_TEMPLATES)}) or a string like '{{title}} by {{brand}}'"
        )
    return tuple(parts)


def template_fields(parts: tuple[_Part, ...]) -> list[str]:
    """Field names a parsed template uses, in order of first use."""
    names: list[str] = []
    for p in parts:
        inner = p.parts if isinstance(p, _Segment) else (p,)
        for q in inner:
            if isinstance(q, _Field) and q.name not in names:
                names.append(q.name)
    return names


def _check_columns(names: list[str], table: pd.DataFrame, template: str) -> None:
    unknown = [f for f in names if f not in table.columns]
    if unknown:
        available = ", ".join(map(str, table.columns)) or "(none: this dataset has ids only)"
        raise TextError(
            f"template {template!r} uses unknown field(s) {', '.join(unknown)}; the item table has: {available}"
        )


def _render_custom(table: pd.DataFrame, template: str) -> RenderedTexts:
    parts = parse_template(template)
    names = template_fields(parts)
    _check_columns(names, table, template)
    columns = {name: table[name].tolist() for name in names}
    texts = [""] * len(table)
    missing: dict[int, str] = {}
    for row in range(1, len(table)):
        out: list[str] = []
        absent: str | None = None
        for p in parts:
            if isinstance(p, _Literal):
                out.append(p.text)
            elif isinstance(p, _Field):
                value = columns[p.name][row]
                if _is_missing(value):
                    if not p.optional:
                        absent = p.name
                        break
                else:
                    out.append(_as_text(value))
            else:
                seg_out: list[str] = []
                for q in p.parts:
                    if isinstance(q, _Literal):
                        seg_out.append(q.text)
                        continue
                    value = columns[q.name][row]
                    if _is_missing(value):
                        seg_out = []
                        break
                    seg_out.append(_as_text(value))
                out.extend(seg_out)
        if absent is not None:
            missing[row] = f"required field '{absent}' is missing"
            continue
        text = " ".join("".join(out).split())
        if text:
            texts[row] = text
        else:
            missing[row] = "the template renders to empty text"
    return RenderedTexts(texts, missing, template_key=f"custom:{template}")


def _render_faerec(table: pd.DataFrame) -> RenderedTexts:
    chosen: list[tuple[str, list[Any]]] = []
    for label, candidates in _FAEREC_FIELDS:
        col = next((c for c in candidates if c in table.columns), None)
        if col is not None:
            chosen.append((label, table[col].tolist()))
    if not chosen:
        wanted = ", ".join(c for _, cands in _FAEREC_FIELDS for c in cands)
        available = ", ".join(map(str, table.columns)) or "(none: this dataset has ids only)"
        raise TextError(
            f"template 'faerec' needs at least one of the columns {wanted}; the item table has: {available}"
        )
    texts = [""] * len(table)
    missing: dict[int, str] = {}
    for row in range(1, len(table)):
        pieces = []
        for label, values in chosen:
            value = values[row]
            if _is_missing(value):
                continue
            text = _as_text(value)
            if label in ("Categories", "Description"):
                text = _flatten_list_literal(text)
            text = " ".join(text.split()).rstrip(".")
            if text:
                pieces.append(f"{label}: {text}.")
        if pieces:
            texts[row] = " ".join(pieces)
        else:
            missing[row] = "every attribute of the faerec template is missing"
    return RenderedTexts(texts, missing, template_key=_FAEREC_VERSION)


def render_texts(item_table: pd.DataFrame, template: str = "title") -> RenderedTexts:
    """Render one text per item id (rows 0..N of ``item_table``; row 0 is padding).

    Args:
        item_table: the dataset's item table, indexed by internal id 0..N.
        template: ``"title"``, ``"faerec"`` or a template string (see module docs).

    Returns:
        :class:`RenderedTexts` with N+1 texts and the items that have none.

    Raises:
        TextError: the template is malformed or names columns the table lacks (the message
            lists the available columns).
    """
    if not isinstance(template, str) or not template.strip():
        raise TextError(f"template must be a non-empty string, got {template!r}")
    if template == "title":
        rendered = _render_custom(item_table, "{title}")
        rendered.template_key = "title"
        for row in rendered.missing:
            rendered.missing[row] = "title is missing"
        return rendered
    if template == "faerec":
        return _render_faerec(item_table)
    if "{" not in template:
        raise TextError(
            f"unknown template {template!r}: use one of {', '.join(BUILTIN_TEMPLATES)} "
            f"or a template string with {{field}} placeholders, e.g. '{{title}} by {{brand?}}'"
        )
    return _render_custom(item_table, template)
