"""DepictQA prompt chunks per task type, the trained question sets, and reading brief answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from iqa_cli.engines.depictqa import questions as q
from iqa_cli.engines.depictqa.prompts import (
    SYS_FR,
    SYS_NR,
    TASK_TYPES,
    ImageSlot,
    build_chunks,
    has_reference,
    image_slots,
    system_prompt,
    task_type,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "depictqa-questions.md"
QUESTION = "What is wrong?"
TAIL = f"\n\n </s> USER: {QUESTION}\n   ASSISTANT: "

SYS_NR_TEXT = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions. As an AI assistant, you are performing an image "
    "quality assessment task."
)

EXPECTED = {
    "quality_single_A_noref": [SYS_NR + "\n\n </s> Image: <Img>", ImageSlot.A, "</Img>" + TAIL],
    "quality_single_B_noref": [SYS_NR + "\n\n </s> Image: <Img>", ImageSlot.B, "</Img>" + TAIL],
    "quality_single_A": [
        SYS_FR + "\n\n </s> Reference Image: <Img-Reference>",
        ImageSlot.REFERENCE,
        "</Img-Reference>\n\n </s> Image: <Img>",
        ImageSlot.A,
        "</Img>" + TAIL,
    ],
    "quality_single_B": [
        SYS_FR + "\n\n </s> Reference Image: <Img-Reference>",
        ImageSlot.REFERENCE,
        "</Img-Reference>\n\n </s> Image: <Img>",
        ImageSlot.B,
        "</Img>" + TAIL,
    ],
    "quality_compare_noref": [
        SYS_NR + "\n\n </s> Image A: <Img-A>",
        ImageSlot.A,
        "</Img-A>\n\n </s> Image B: <Img-B>",
        ImageSlot.B,
        "</Img-B>" + TAIL,
    ],
    "quality_compare": [
        SYS_FR + "\n\n </s> Reference Image: <Img-Reference>",
        ImageSlot.REFERENCE,
        "</Img-Reference>\n\n </s> Image A: <Img-A>",
        ImageSlot.A,
        "</Img-A>\n\n </s> Image B: <Img-B>",
        ImageSlot.B,
        "</Img-B>" + TAIL,
    ],
}


def test_system_texts_are_the_trained_ones():
    assert SYS_NR == SYS_NR_TEXT
    assert SYS_FR == SYS_NR_TEXT + " A high-quality Reference Image is provided to assist the evaluation."


@pytest.mark.parametrize("task", TASK_TYPES)
def test_chunks_per_task_type(task):
    chunks = build_chunks(task, QUESTION)
    assert chunks == EXPECTED[task]
    # Image slots sit between text chunks: text first and last, never two slots in a row.
    assert all(isinstance(c, str) == (i % 2 == 0) for i, c in enumerate(chunks))
    assert [c for c in chunks if isinstance(c, ImageSlot)] == image_slots(task)
    assert system_prompt(task) == (SYS_FR if has_reference(task) else SYS_NR)


def test_no_bos_and_three_spaces_before_assistant():
    chunks = build_chunks("quality_single_A_noref", QUESTION)
    assert not chunks[0].startswith("<s>")
    assert chunks[-1].endswith(f"{QUESTION}\n   ASSISTANT: ")


def test_task_type_helper_and_unknown_types():
    assert task_type(compare=False, reference=False) == "quality_single_A_noref"
    assert task_type(compare=False, reference=True, image=ImageSlot.B) == "quality_single_B"
    assert task_type(compare=True, reference=False) == "quality_compare_noref"
    assert task_type(compare=True, reference=True) == "quality_compare"
    with pytest.raises(ValueError, match="quality_single_A_noref"):
        build_chunks("quality_single", QUESTION)
    with pytest.raises(ValueError):
        task_type(compare=False, reference=True, image=ImageSlot.REFERENCE)


def test_question_set_sizes_and_wordings():
    assert len(q.DISTORTION_QUESTIONS_NOREF) == 24
    assert len(q.DISTORTION_QUESTIONS_REF) == 25
    for entry in q.DISTORTION_QUESTIONS_NOREF + q.DISTORTION_QUESTIONS_REF:
        assert "(s)" in entry.open and " ONE " in entry.one and " TWO " in entry.two
    assert len(q.question_set(q.DISTORTION_IDENTIFICATION, reference=False)) == 72
    assert len(q.question_set(q.DISTORTION_IDENTIFICATION, reference=True)) == 75
    for task in (q.INSTANT_RATING, q.ASSESSMENT_REASONING, q.COMPARISON_REASONING):
        assert len(q.question_set(task, reference=False)) == 20
        assert q.question_set(task, reference=True) == q.question_set(task, reference=False)
    with pytest.raises(ValueError, match="distortion_identification"):
        q.question_set("rating", reference=False)


def test_trained_questions_carry_no_single_word_phrase():
    # So the tail alone decides between a single-word and a sentence answer, and the re-ask rule applies.
    for task in q.TASKS:
        for reference in (False, True):
            assert not any(q.has_single_word_instruction(s) for s in q.question_set(task, reference=reference))


def test_default_questions():
    for reference in (False, True):
        assert q.default_question(q.DISTORTION_IDENTIFICATION, reference=reference) == (
            "What are the primary degradation(s) observed in the evaluated image?"
            " Answer the question using a single word or phrase."
        )
        assert q.default_question(q.INSTANT_RATING, reference=reference) == (
            "Which image do you believe has better overall quality: Image A or Image B?"
            " Answer the question using a single word or phrase."
        )
        assert q.default_question(q.ASSESSMENT_REASONING, reference=reference) == (
            "Evaluate the quality of the image and provide a comprehensive explanation."
        )
        assert q.default_question(q.COMPARISON_REASONING, reference=reference) == (
            "Compare the overall quality of Image A with Image B and provide a comprehensive explanation."
        )
    for task in q.TASKS:
        asked = q.default_question(task, reference=False)
        brief = task in (q.DISTORTION_IDENTIFICATION, q.INSTANT_RATING)  # trained with single-word answers
        assert q.has_single_word_instruction(asked) == brief


@pytest.mark.parametrize("phrase", q.SINGLE_WORD_PHRASES)
def test_single_word_phrases(phrase):
    assert q.has_single_word_instruction(f"Name it in {phrase}.")
    # The authors' test is a case-sensitive substring match.
    assert not q.has_single_word_instruction(f"Name it in {phrase.upper()}.")


def test_clean_answer():
    assert q.clean_answer("  Blur and noise\n ") == "Blur and noise"
    assert q.clean_answer("Image A\n </s> junk") == "Image A"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("None", []),
        ("None\n ", []),
        ("Blur", ["blur"]),
        ("Blur and noise", ["blur", "noise"]),
        ("Overly high brightness and color quantization", ["overly high brightness", "color quantization"]),
        ("Insufficient saturation\n </s>", ["insufficient saturation"]),
        ("The primary TWO degradations in the evaluated image are pixelation and noise.", ["pixelation", "noise"]),
        ("The quality of the evaluated image is quite good without any distortion.", []),
        ("Noise and noise", ["noise"]),
        ("Something else", []),
    ],
)
def test_parse_distortions(answer, expected):
    assert q.parse_distortions(answer) == expected


def test_every_category_name_reads_back():
    for name in q.DISTORTION_NAMES:
        capitalised = name[0].upper() + name[1:]
        assert q.parse_distortions(capitalised) == [name]


@pytest.mark.parametrize(
    ("answer", "winner"),
    [
        ("Image A", "A"),
        ("Image B\n ", "B"),
        ("I believe Image B has better overall quality.", "B"),
        ("Image B is worse than Image A", "B"),
        ("Image AB", None),
        ("image a", None),
        ("", None),
    ],
)
def test_parse_winner(answer, winner):
    assert q.parse_winner(answer) == winner


def test_doc_lists_every_question():
    text = DOC.read_text()
    for task in q.TASKS:
        for reference in (False, True):
            for question in q.question_set(task, reference=reference):
                assert question in text, question


def test_modules_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "import iqa_cli.engines.depictqa.prompts, iqa_cli.engines.depictqa.questions\n"
        "import iqa_cli.engines.depictqa.confidence, iqa_cli.engines.depictqa.tokenizer\n"
        "import iqa_cli.engines.depictqa.preprocess, iqa_cli.engines.depictqa.engine\n"  # the decode workers' side
    )
    subprocess.run([sys.executable, "-c", code], check=True)
