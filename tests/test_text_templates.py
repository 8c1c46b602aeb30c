"""Templates: builtin title/faerec, template strings, missing-field rules, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from padrec.text import TextError, render_texts
from padrec.text.templates import parse_template, template_fields


def table(rows: list[dict[str, str]]) -> pd.DataFrame:
    cols = sorted({k for r in rows for k in r})
    return pd.DataFrame([{c: "" for c in cols}] + [{c: r.get(c, "") for c in cols} for r in rows])


def test_title_template_row0_empty_and_missing_reported() -> None:
    r = render_texts(table([{"title": "Milk"}, {"title": ""}, {"title": "  Tea "}]), "title")
    assert r.texts == ["", "Milk", "", "Tea"]
    assert r.missing == {2: "title is missing"}
    assert r.template_key == "title"


def test_title_template_without_title_column_lists_columns() -> None:
    with pytest.raises(TextError, match=r"unknown field\(s\) title.*has: brand"):
        render_texts(table([{"brand": "Acme"}]), "title")


def test_faerec_template_skips_missing_fields_and_flattens_lists() -> None:
    t = table(
        [
            {
                "title": "Milk Duds",
                "brand": "Hershey",
                "price": "$3.50",
                "categories": "['Grocery', ['Candy']]",
                "description": "Chewy caramel.",
            },
            {"title": "Tea", "brand": "", "price": "", "categories": "", "description": ""},
            {"title": "", "brand": "", "price": "", "categories": "", "description": ""},
        ]
    )
    r = render_texts(t, "faerec")
    assert r.texts[1] == (
        "Title: Milk Duds. Brand: Hershey. Price: $3.50. Categories: Grocery, Candy. Description: Chewy caramel."
    )
    assert r.texts[2] == "Title: Tea."
    assert r.texts[3] == ""
    assert 3 in r.missing


def test_faerec_uses_name_when_no_title() -> None:
    r = render_texts(table([{"name": "Widget", "brand": "Acme"}]), "faerec")
    assert r.texts[1] == "Title: Widget. Brand: Acme."


def test_faerec_needs_some_attribute() -> None:
    with pytest.raises(TextError, match="needs at least one of the columns"):
        render_texts(table([{"color": "red"}]), "faerec")


def test_custom_required_optional_and_segment() -> None:
    t = table(
        [
            {"title": "Milk", "brand": "Acme", "price": "2"},
            {"title": "Tea", "brand": "", "price": "3"},
            {"title": "", "brand": "Acme", "price": "1"},
        ]
    )
    r = render_texts(t, "{title}[ by {brand}][, ${price}]")
    assert r.texts[1:] == ["Milk by Acme, $2", "Tea, $3", ""]
    assert r.missing == {3: "required field 'title' is missing"}

    r2 = render_texts(t, "{title?} from {brand?}")
    assert r2.texts[1:] == ["Milk from Acme", "Tea from", "from Acme"]
    assert r2.template_key == "custom:{title?} from {brand?}"


def test_custom_literal_escapes() -> None:
    r = render_texts(table([{"title": "Milk"}]), "{{x}} [[{title}]]")
    assert r.texts[1] == "{x} [Milk]"


def test_custom_unknown_field_lists_available() -> None:
    with pytest.raises(TextError) as err:
        render_texts(table([{"title": "Milk", "brand": "A"}]), "{title} by {maker}")
    assert "maker" in str(err.value) and "brand, title" in str(err.value)


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("{title", "no closing"),
        ("title}", "unmatched '}'"),
        ("[{title}", "never closed"),
        ("{title}]", "unmatched ']'"),
        ("[a [{title}]]", "cannot be nested"),
        ("{}", "empty or malformed"),
        ("no fields here {{}}", "has no {field}"),
    ],
)
def test_malformed_templates(bad: str, msg: str) -> None:
    with pytest.raises(TextError, match=msg):
        parse_template(bad)


def test_unknown_builtin_name() -> None:
    with pytest.raises(TextError, match="unknown template 'titles'"):
        render_texts(table([{"title": "x"}]), "titles")


def test_template_fields_order() -> None:
    assert template_fields(parse_template("{b} {a?} [{c} {b}]")) == ["b", "a", "c"]


def test_nan_and_none_count_as_missing() -> None:
    t = pd.DataFrame({"title": ["", "Milk", float("nan"), None]})
    r = render_texts(t, "title")
    assert r.texts == ["", "Milk", "", ""]
    assert sorted(r.missing) == [2, 3]
