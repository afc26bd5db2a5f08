"""Long lists in one line of output: a thousand seeds as ``1–1000``, a thousand comparison files
as their first and last name and a count."""

from __future__ import annotations

import pytest

from entropyflow.text import file_names, number_ranges


@pytest.mark.parametrize(
    "numbers,text",
    [
        (range(1, 1001), "1–1000"),
        ([0, 2, 3, 4, 9], "0, 2–4, 9"),
        ([5, 6], "5, 6"),
        ([7], "7"),
        ([], ""),
        ([3, 2, 1], "3, 2, 1"),  # the order given: a run counts up
        ([1, 2, 3, 1, 2, 3], "1–3, 1–3"),
        ([1, None, 2, 3, 4], "1, None, 2–4"),
    ],
)
def test_number_ranges(numbers, text):
    assert number_ranges(numbers) == text


def test_a_thousand_numbered_files_are_named_by_their_ends():
    names = ["layers.csv", "analysis.json", *(f"compare-{k}.analysis.json" for k in range(1, 1001)), "seeds.csv"]
    assert file_names(names) == (
        "layers.csv, analysis.json, compare-1.analysis.json … compare-1000.analysis.json (1000 files), seeds.csv"
    )


def test_a_few_numbered_files_are_all_named():
    names = ["compare-1.analysis.json", "compare-2.analysis.json", "compare-3.analysis.json", "a.csv"]
    assert file_names(names) == ", ".join(names)
    assert file_names([*names[:3], "compare-4.analysis.json"]) == (
        "compare-1.analysis.json … compare-4.analysis.json (4 files)"
    )


def test_names_with_two_numbers_are_never_merged():
    names = [f"run{k}-seed{k}.csv" for k in range(6)]
    assert file_names(names) == ", ".join(names)


def test_the_cli_names_many_seeds_and_their_files_in_a_few_words(tmp_path):
    from hostile import run

    r = run("analyze", "sample:digits_vgg", "--random-init", "--compare", "random", "--seeds", "40", "-o", tmp_path)
    assert r.rc == 0, r.err[-1000:]
    assert "random-init seeds (1–40)" in r.out
    assert "compare-1.analysis.json … compare-40.analysis.json (40 files)" in r.out
    assert sum(1 for p in tmp_path.iterdir() if p.name.startswith("compare-")) == 40
