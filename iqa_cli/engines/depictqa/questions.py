"""The questions DepictQA-Wild was trained on for each task, and how to read its brief answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import NamedTuple

from iqa_cli.categories import CATEGORIES

# Every question string is data from the authors' dataset scripts (XPixelGroup/DepictQA,
# build_datasets/scripts/), kept in questions.json; docs/depictqa-questions.md gives file by file provenance.

DISTORTION_IDENTIFICATION = "distortion_identification"
INSTANT_RATING = "instant_rating"
ASSESSMENT_REASONING = "assessment_reasoning"
COMPARISON_REASONING = "comparison_reasoning"
TASKS = (DISTORTION_IDENTIFICATION, INSTANT_RATING, ASSESSMENT_REASONING, COMPARISON_REASONING)

SINGLE_WORD_TAIL = " Answer the question using a single word or phrase."
# The authors' test for "this question already asks for a single word" (src/model/utils/confidence.py,
# single_q_tail_list): a case-sensitive substring match, kept as is.
SINGLE_WORD_PHRASES = ("single word", "one word", "a word", "single phrase", "one phrase", "a phrase")


class DistortionQuestion(NamedTuple):
    """One distortion-identification question in the three wordings DQ-495K used."""

    # "(s)": the model decides how many distortions to name; trained on single- and multi-distortion images.
    open: str
    # "ONE": asked of single-distortion images (and the wording of the single-distortion test sets).
    one: str
    # "TWO": asked of two-distortion images (and the wording of the multi-distortion test sets).
    two: str


# The authors' question sets (questions.json: each with the dataset script it was transcribed from).
_SETS = json.loads((Path(__file__).with_name("questions.json")).read_text(encoding="utf-8"))
DISTORTION_QUESTIONS_NOREF = tuple(
    DistortionQuestion(**e) for e in _SETS[DISTORTION_IDENTIFICATION]["no_reference"]["entries"]
)
DISTORTION_QUESTIONS_REF = tuple(
    DistortionQuestion(**e) for e in _SETS[DISTORTION_IDENTIFICATION]["reference"]["entries"]
)
RATING_QUESTIONS = tuple(_SETS[INSTANT_RATING]["questions"])
ASSESSMENT_QUESTIONS = tuple(_SETS[ASSESSMENT_REASONING]["questions"])
COMPARISON_QUESTIONS = tuple(_SETS[COMPARISON_REASONING]["questions"])

# Indices of the questions the engine asks by default (the reasons are in docs/depictqa-questions.md).
_DEFAULT_DISTORTION = 0  # "What are the primary degradation(s) observed in the evaluated image?" (open form)
_DEFAULT_RATING = 0  # "Which image do you believe has better overall quality: Image A or Image B?"
_DEFAULT_ASSESSMENT = 19  # "Evaluate the quality of the image and provide a comprehensive explanation."
_DEFAULT_COMPARISON = 0  # "Compare the overall quality of Image A with Image B and provide a comprehensive ..."


def question_set(task: str, *, reference: bool) -> tuple[str, ...]:
    """Every question the model was trained with for a task, without the single-word tail.

    Distortion identification lists each entry's three wordings (open, ONE, TWO) in turn.
    """
    if task == DISTORTION_IDENTIFICATION:
        entries = DISTORTION_QUESTIONS_REF if reference else DISTORTION_QUESTIONS_NOREF
        return tuple(wording for entry in entries for wording in entry)
    return _plain_set(task)


def default_question(task: str, *, reference: bool) -> str:
    """The question the engine asks for a task; brief tasks end with SINGLE_WORD_TAIL."""
    if task == DISTORTION_IDENTIFICATION:
        entries = DISTORTION_QUESTIONS_REF if reference else DISTORTION_QUESTIONS_NOREF
        return entries[_DEFAULT_DISTORTION].open + SINGLE_WORD_TAIL
    if task == INSTANT_RATING:
        return RATING_QUESTIONS[_DEFAULT_RATING] + SINGLE_WORD_TAIL
    if task == ASSESSMENT_REASONING:
        return ASSESSMENT_QUESTIONS[_DEFAULT_ASSESSMENT]
    return _plain_set(task)[_DEFAULT_COMPARISON]


def has_single_word_instruction(question: str) -> bool:
    """Whether the question already asks for a single word or phrase (the authors' substring test)."""
    return any(phrase in question for phrase in SINGLE_WORD_PHRASES)


def _plain_set(task: str) -> tuple[str, ...]:
    sets = {
        INSTANT_RATING: RATING_QUESTIONS,
        ASSESSMENT_REASONING: ASSESSMENT_QUESTIONS,
        COMPARISON_REASONING: COMPARISON_QUESTIONS,
    }
    if task not in sets:
        raise ValueError(f"unknown DepictQA task {task!r}; expected one of {', '.join(TASKS)}")
    return sets[task]


# The answer names of DQ-495K's twelve distortion categories (degradation_rename in the gen_json_*_brief_*.py
# scripts), lower case; a single-word answer capitalises the first letter and joins two with " and ".
DISTORTION_NAMES = tuple(CATEGORIES.values())
# Longest names first so that a name never matches inside a longer one.
_NAME_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(n) for n in sorted(DISTORTION_NAMES, key=len, reverse=True)) + r")\b"
)
_WINNER_PATTERN = re.compile(r"\bImage ([AB])\b")
_EOS_TEXT = "</s>"


def clean_answer(text: str) -> str:
    """The answer as shown to users: cut at the first literal "</s>", surrounding whitespace stripped."""
    return text.split(_EOS_TEXT, 1)[0].strip()


def parse_distortions(answer: str) -> list[str]:
    """The category names an identification answer mentions, in the order given, without repeats.

    "Blur and noise" -> ["blur", "noise"]; "None" -> []. Sentence answers (to a question without the
    single-word tail) read the same way: "... are blur and noise." -> ["blur", "noise"], and the
    no-distortion sentence names no category -> []. Words that are not DQ-495K names are ignored;
    the raw answer is kept by the caller.
    """
    found: list[str] = []
    for match in _NAME_PATTERN.finditer(clean_answer(answer).lower()):
        if match.group(1) not in found:
            found.append(match.group(1))
    return found


def parse_winner(answer: str) -> str | None:
    """ "A" or "B" from an instant-rating answer: the first "Image A" / "Image B" in it, else None.

    The first mention is the one the confidence rule scores, so winner and confidence agree.
    """
    match = _WINNER_PATTERN.search(clean_answer(answer))
    return match.group(1) if match else None
