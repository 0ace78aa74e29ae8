"""posttrain.ocr_join: OpenCodeReasoning-II's placeholder questions joined from TACO, APPS, CodeContests and
open-r1/codeforces (fixtures in their hub schemas and layouts: tests/fixtures/hub_schemas.py).

Run: .venv/bin/python -m pytest tests/test_ocr_join.py -x -q   (CPU, no network, ~10 s)
"""
import datasets
import pytest

from fixtures.hub_schemas import write_ocr2_fixture
from posttrain.data import load_sft_rows
from posttrain.ocr_join import INDEX_OUT_OF_RANGE, join_questions, problem_text, question_of
from posttrain.params import DataParams
from posttrain.prompts import code_sft_messages


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return write_ocr2_fixture(tmp_path_factory.mktemp("ocr2"))


def test_every_source_joins_by_dataset_split_and_index(fixture):
    ocr = datasets.load_dataset("json", data_files=fixture["ocr2"], split="train")
    lookup, counts = join_questions(ocr, fixture["join_sources"])
    assert counts["by_status"] == {"joined": 12, INDEX_OUT_OF_RANGE: 1}
    assert counts["by_source"]["joined open-r1/codeforces"] == 3 and counts["by_source"]["joined apps"] == 3
    for row in ocr:
        text, status = question_of(row, lookup)
        if status != "joined":
            assert text == "-" and status == INDEX_OUT_OF_RANGE
            continue
        assert text == problem_text(row["dataset"], fixture["expected"][row["id"]]) and text != "-"
    cf = next(question_of(r, lookup)[0] for r in ocr if r["dataset"] == "open-r1/codeforces" and r["index"] == "1")
    assert cf == ("Codeforces problem 1: given n, print n minus 1.\n\nInput\n\nOne integer n.\n\nOutput\n\nOne "
                  "integer.\n\nExamples\n\nInput\n\n10\n\nOutput\n\n9\n\nNote\n\nSubtract 1.")


def test_sft_rows_carry_the_joined_problem_and_count_the_unjoined(fixture):
    data = DataParams(source="open_code_reasoning_2", path=fixture["ocr2"], languages=["python"],
                      join_sources=fixture["join_sources"], streaming=False)
    ds, join_counts = load_sft_rows(data)
    assert join_counts == {"joined": 12, INDEX_OUT_OF_RANGE: 1}
    kept = [r for r in ds if not r["skip"]]
    assert len(kept) == 12 and sum(r["skip"] for r in ds) == 1
    want = code_sft_messages("TACO problem 2: read n and print n + 2.", "x", "python")[0]["content"]
    assert want in {r["messages"][0]["content"] for r in kept}


def test_a_source_that_cannot_be_found_is_an_error_naming_it(fixture, tmp_path):
    sources = {**fixture["join_sources"], "apps": str(tmp_path / "nowhere/{split}.jsonl")}
    ocr = datasets.load_dataset("json", data_files=fixture["ocr2"], split="train")
    with pytest.raises(FileNotFoundError, match="data.join_sources.apps: no file matches"):
        join_questions(ocr, sources)
    with pytest.raises(ValueError, match=r"must hold '\{split\}'"):
        join_questions(ocr, {**fixture["join_sources"], "taco": str(tmp_path / "taco.parquet")})
