"""The strict JSON reader every untrusted JSON file goes through (entropyflow/strictjson.py)."""

from __future__ import annotations

import json

import pytest

from entropyflow import strictjson
from entropyflow.strictjson import JSONError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1, "b": {"c": 2, "c": 3}}', 'the key "c" appears twice in one object'),
        ("[1, NaN]", "NaN is not a JSON number"),
        ('{"x": -Infinity}', "-Infinity is not a JSON number"),
        ("[1e400]", "the number 1e400 overflows a double"),
        ("[-1e999]", "the number -1e999 overflows a double"),
        ("[" + "9" * 5000 + "]", "an integer with 5000 digits (at most 64)"),
        ("[" * 2000 + "]" * 2000, "nested more than 100 levels deep"),
        ('{"a": 1', "Expecting ',' delimiter: line 1 column 8 (char 7)"),
    ],
)
def test_refused_with_one_line(text: str, message: str) -> None:
    with pytest.raises(JSONError) as info:
        strictjson.loads(text)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_accepts_what_json_accepts_within_bounds() -> None:
    doc = {"a": [1, -2, 1.5e308, -1.5e-300, '[[{{\\"', None, True], "b": {"c": "x" * 10}, "d": 10**63}
    text = json.dumps(doc)
    assert strictjson.loads(text) == doc
    # brackets inside strings do not count as nesting
    assert strictjson.loads(json.dumps(["[" * 500])) == ["[" * 500]
    deep = "[" * 100 + "]" * 100
    assert strictjson.loads(deep) == json.loads(deep)


def test_read_bounds_size_before_reading(tmp_path) -> None:
    p = tmp_path / "big.json"
    with p.open("wb") as f:  # a sparse 2 GiB file: refused from its size, never read
        f.truncate(2 << 30)
    with pytest.raises(JSONError, match=r"^2,147,483,648 bytes, more than the 1 MiB such a file may have$"):
        strictjson.read(p, max_bytes=1 << 20)
    q = tmp_path / "bad.json"
    q.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(JSONError, match="^not UTF-8 text$"):
        strictjson.read(q, max_bytes=1 << 20)
    r = tmp_path / "ok.json"
    r.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert strictjson.read(r, max_bytes=64) == {"a": [1, 2]}
