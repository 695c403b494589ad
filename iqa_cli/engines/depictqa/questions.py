"""The questions DepictQA-Wild was trained on for each task, and how to read its brief answers."""

from __future__ import annotations

import re
from typing import NamedTuple

# Every question string below is data from the authors' dataset scripts (XPixelGroup/DepictQA,
# build_datasets/scripts/; see docs/depictqa-questions.md for file by file provenance).

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


# constants_A_qr.py: no reference image.
DISTORTION_QUESTIONS_NOREF = (
    DistortionQuestion(
        "What are the primary degradation(s) observed in the evaluated image?",
        "What is the primary ONE degradation observed in the evaluated image?",
        "What are the primary TWO degradations observed in the evaluated image?",
    ),
    DistortionQuestion(
        "What distortion(s) are most apparent in the evaluated image?",
        "What ONE distortion is most apparent in the evaluated image?",
        "What TWO distortions are most apparent in the evaluated image?",
    ),
    DistortionQuestion(
        "Identify the chief degradation(s) in the evaluated image.",
        "Identify the chief ONE degradation in the evaluated image.",
        "Identify the chief TWO degradations in the evaluated image.",
    ),
    DistortionQuestion(
        "Pinpoint the foremost image quality issue(s) in the evaluated image.",
        "Pinpoint the foremost ONE image quality issue in the evaluated image.",
        "Pinpoint the foremost TWO image quality issues in the evaluated image.",
    ),
    DistortionQuestion(
        "What distortion(s) stand out in the evaluated image?",
        "What ONE distortion stands out in the evaluated image?",
        "What TWO distortions stand out in the evaluated image?",
    ),
    DistortionQuestion(
        "What distortion(s) are most prominent in the evaluated image?",
        "What ONE distortion is most prominent in the evaluated image?",
        "What TWO distortions are most prominent in the evaluated image?",
    ),
    DistortionQuestion(
        "What critical quality degradation(s) are present in the evaluated image?",
        "What critical ONE quality degradation is present in the evaluated image?",
        "What critical TWO quality degradations are present in the evaluated image?",
    ),
    DistortionQuestion(
        "Highlight the most significant distortion(s) in the evaluated image.",
        "Highlight the most significant ONE distortion in the evaluated image.",
        "Highlight the most significant TWO distortions in the evaluated image.",
    ),
    DistortionQuestion(
        "What distortion(s) most detrimentally affect the overall quality of the evaluated image?",
        "What ONE distortion most detrimentally affects the overall quality of the evaluated image?",
        "What TWO distortions most detrimentally affect the overall quality of the evaluated image?",
    ),
    DistortionQuestion(
        "Determine the most impactful distortion(s) in the evaluated image.",
        "Determine the most impactful ONE distortion in the evaluated image.",
        "Determine the most impactful TWO distortions in the evaluated image.",
    ),
    DistortionQuestion(
        "Identify the most notable distortion(s) in the evaluated image's quality.",
        "Identify the most notable ONE distortion in the evaluated image's quality.",
        "Identify the most notable TWO distortions in the evaluated image's quality.",
    ),
    DistortionQuestion(
        "What distortion(s) most significantly affect the evaluated image?",
        "What ONE distortion most significantly affects the evaluated image?",
        "What TWO distortions most significantly affect the evaluated image?",
    ),
    DistortionQuestion(
        "Determine the leading degradation(s) in the evaluated image.",
        "Determine the leading ONE degradation in the evaluated image.",
        "Determine the leading TWO degradations in the evaluated image.",
    ),
    DistortionQuestion(
        "What distortion(s) are most prominent when examining the evaluated image?",
        "What ONE distortion is most prominent when examining the evaluated image?",
        "What TWO distortions are most prominent when examining the evaluated image?",
    ),
    DistortionQuestion(
        "What distortion(s) are most evident in the evaluated image?",
        "What ONE distortion is most evident in the evaluated image?",
        "What TWO distortions are most evident in the evaluated image?",
    ),
    DistortionQuestion(
        "What quality degradation(s) are most apparent in the evaluated image?",
        "What ONE quality degradation is most apparent in the evaluated image?",
        "What TWO quality degradations are most apparent in the evaluated image?",
    ),
    DistortionQuestion(
        "In terms of image quality, what are the most glaring issue(s) with the evaluated image?",
        "In terms of image quality, what is the most glaring ONE issue with the evaluated image?",
        "In terms of image quality, what are the most glaring TWO issues with the evaluated image?",
    ),
    DistortionQuestion(
        "What are the foremost distortion(s) affecting the evaluated image's quality?",
        "What is the foremost ONE distortion affecting the evaluated image's quality?",
        "What are the foremost TWO distortions affecting the evaluated image's quality?",
    ),
    DistortionQuestion(
        "Identify the most critical distortion(s) in the evaluated image.",
        "Identify the most critical ONE distortion in the evaluated image.",
        "Identify the most critical TWO distortions in the evaluated image.",
    ),
    DistortionQuestion(
        "In the evaluated image, what distortion(s) are most detrimental to image quality?",
        "In the evaluated image, what ONE distortion is most detrimental to image quality?",
        "In the evaluated image, what TWO distortions are most detrimental to image quality?",
    ),
    DistortionQuestion(
        "What are the most severe degradation(s) observed in the evaluated image?",
        "What is the most severe ONE degradation observed in the evaluated image?",
        "What are the most severe TWO degradations observed in the evaluated image?",
    ),
    DistortionQuestion(
        "What are the leading distortion(s) in the evaluated image?",
        "What is the leading ONE distortion in the evaluated image?",
        "What are the leading TWO distortions in the evaluated image?",
    ),
    DistortionQuestion(
        "What are the most critical image quality issue(s) in the evaluated image?",
        "What is the most critical ONE image quality issue in the evaluated image?",
        "What are the most critical TWO image quality issues in the evaluated image?",
    ),
    DistortionQuestion(
        "What distortion(s) most notably affect the clarity of the evaluated image?",
        "What ONE distortion most notably affects the clarity of the evaluated image?",
        "What TWO distortions most notably affect the clarity of the evaluated image?",
    ),
)
# constants_refA_qr.py: with a reference image (questions name the reference).
DISTORTION_QUESTIONS_REF = (
    DistortionQuestion(
        "What are the primary degradation(s) observed in the evaluated image?",
        "What is the primary ONE degradation observed in the evaluated image?",
        "What are the primary TWO degradations observed in the evaluated image?",
    ),
    DistortionQuestion(
        "What distortion(s) are most apparent in the evaluated image relative to the reference?",
        "What ONE distortion is most apparent in the evaluated image relative to the reference?",
        "What TWO distortions are most apparent in the evaluated image relative to the reference?",
    ),
    DistortionQuestion(
        "Identify the chief degradation(s) in the evaluated image when compared to the reference.",
        "Identify the chief ONE degradation in the evaluated image when compared to the reference.",
        "Identify the chief TWO degradations in the evaluated image when compared to the reference.",
    ),
    DistortionQuestion(
        "Pinpoint the foremost image quality issue(s) in the evaluated image.",
        "Pinpoint the foremost ONE image quality issue in the evaluated image.",
        "Pinpoint the foremost TWO image quality issues in the evaluated image.",
    ),
    DistortionQuestion(
        "What distortion(s) stand out in the evaluated image against the reference?",
        "What ONE distortion stands out in the evaluated image against the reference?",
        "What TWO distortions stand out in the evaluated image against the reference?",
    ),
    DistortionQuestion(
        "In comparison to the reference, what distortion(s) are most prominent in the evaluated image?",
        "In comparison to the reference, what ONE distortion is most prominent in the evaluated image?",
        "In comparison to the reference, what TWO distortions are most prominent in the evaluated image?",
    ),
    DistortionQuestion(
        "What critical quality degradation(s) are present in the evaluated image versus the reference?",
        "What critical ONE quality degradation is present in the evaluated image versus the reference?",
        "What critical TWO quality degradations are present in the evaluated image versus the reference?",
    ),
    DistortionQuestion(
        "Highlight the most significant distortion(s) in the evaluated image in comparison to the reference.",
        "Highlight the most significant ONE distortion in the evaluated image in comparison to the reference.",
        "Highlight the most significant TWO distortions in the evaluated image in comparison to the reference.",
    ),
    DistortionQuestion(
        "What distortion(s) most detrimentally affect the overall quality of the evaluated image?",
        "What ONE distortion most detrimentally affects the overall quality of the evaluated image?",
        "What TWO distortions most detrimentally affect the overall quality of the evaluated image?",
    ),
    DistortionQuestion(
        "Determine the most impactful distortion(s) in the evaluated image compared to the reference.",
        "Determine the most impactful ONE distortion in the evaluated image compared to the reference.",
        "Determine the most impactful TWO distortions in the evaluated image compared to the reference.",
    ),
    DistortionQuestion(
        "Identify the most notable distortion(s) in the evaluated image's quality when compared to the reference.",
        "Identify the most notable ONE distortion in the evaluated image's quality when compared to the reference.",
        "Identify the most notable TWO distortions in the evaluated image's quality when compared to the reference.",
    ),
    DistortionQuestion(
        "What distortion(s) most significantly affect the evaluated image compared to the reference?",
        "What ONE distortion most significantly affects the evaluated image compared to the reference?",
        "What TWO distortions most significantly affect the evaluated image compared to the reference?",
    ),
    DistortionQuestion(
        "Determine the leading degradation(s) when comparing the evaluated image to the reference.",
        "Determine the leading ONE degradation when comparing the evaluated image to the reference.",
        "Determine the leading TWO degradations when comparing the evaluated image to the reference.",
    ),
    DistortionQuestion(
        "What distortion(s) are most prominent when examining the evaluated image?",
        "What ONE distortion is most prominent when examining the evaluated image?",
        "What TWO distortions are most prominent when examining the evaluated image?",
    ),
    DistortionQuestion(
        "What distortion(s) are most evident in the evaluated image?",
        "What ONE distortion is most evident in the evaluated image?",
        "What TWO distortions are most evident in the evaluated image?",
    ),
    DistortionQuestion(
        "What quality degradation(s) are most apparent in the evaluated image?",
        "What ONE quality degradation is most apparent in the evaluated image?",
        "What TWO quality degradations are most apparent in the evaluated image?",
    ),
    DistortionQuestion(
        "In terms of image quality, what are the most glaring issue(s) with the evaluated image?",
        "In terms of image quality, what is the most glaring ONE issue with the evaluated image?",
        "In terms of image quality, what are the most glaring TWO issues with the evaluated image?",
    ),
    DistortionQuestion(
        "What are the foremost distortion(s) affecting the evaluated image's quality?",
        "What is the foremost ONE distortion affecting the evaluated image's quality?",
        "What are the foremost TWO distortions affecting the evaluated image's quality?",
    ),
    DistortionQuestion(
        "Compared to the reference, what distortion(s) stand out most in the evaluated image?",
        "Compared to the reference, what ONE distortion stands out most in the evaluated image?",
        "Compared to the reference, what TWO distortions stand out most in the evaluated image?",
    ),
    DistortionQuestion(
        "Identify the most critical distortion(s) in the evaluated image.",
        "Identify the most critical ONE distortion in the evaluated image.",
        "Identify the most critical TWO distortions in the evaluated image.",
    ),
    DistortionQuestion(
        "In the evaluated image, what distortion(s) are most detrimental to image quality?",
        "In the evaluated image, what ONE distortion is most detrimental to image quality?",
        "In the evaluated image, what TWO distortions are most detrimental to image quality?",
    ),
    DistortionQuestion(
        "What are the most severe degradation(s) observed in the evaluated image?",
        "What is the most severe ONE degradation observed in the evaluated image?",
        "What are the most severe TWO degradations observed in the evaluated image?",
    ),
    DistortionQuestion(
        "What are the leading distortion(s) in the evaluated image?",
        "What is the leading ONE distortion in the evaluated image?",
        "What are the leading TWO distortions in the evaluated image?",
    ),
    DistortionQuestion(
        "What are the most critical image quality issue(s) in the evaluated image?",
        "What is the most critical ONE image quality issue in the evaluated image?",
        "What are the most critical TWO image quality issues in the evaluated image?",
    ),
    DistortionQuestion(
        "What distortion(s) most notably affect the clarity of the evaluated image?",
        "What ONE distortion most notably affects the clarity of the evaluated image?",
        "What TWO distortions most notably affect the clarity of the evaluated image?",
    ),
)
# gen_json_refAB_brief.py; the no-reference set is the same (refAB2AB_brief.py only drops the reference).
RATING_QUESTIONS = (
    "Which image do you believe has better overall quality: Image A or Image B?",
    "Determine which image exhibits higher quality between Image A and Image B.",
    "Compare the general quality of Image A and Image B, and state your preference.",
    "In your opinion, which image demonstrates superior quality: Image A or Image B?",
    "Which of the two images, Image A or Image B, do you consider to be of better quality?",
    "Evaluate the quality of Image A and Image B, and decide which one is superior.",
    "Between Image A and Image B, which image do you think has better quality overall?",
    "Determine which image, Image A or Image B, you perceive to have better quality.",
    "Assess the quality of Image A and Image B, and choose the one you believe is superior.",
    "Which image stands out to you as having better quality: Image A or Image B?",
    "Can you compare the quality of Image A and Image B and decide which one is better?",
    "Decide which image, Image A or Image B, you think possesses higher quality.",
    "Evaluate Image A and Image B, and select the one that you feel has better quality.",
    "Which of the two images, Image A or Image B, appears to have superior quality to you?",
    "Compare the quality of Image A and Image B, and determine which one you prefer.",
    "Make a judgment on which image, Image A or Image B, you consider to be of better quality.",
    "Between Image A and Image B, which image do you perceive to have better quality overall?",
    "Assess the quality of Image A and Image B, and indicate which one you find to be better.",
    "Which image, Image A or Image B, do you think displays better quality when compared?",
    "Differentiate between Image A and Image B in terms of overall quality and decide which one is superior.",
)
# gen_json_refA_detail.py; the no-reference set is the same (refA2A_*.py rewrite answers, not questions).
ASSESSMENT_QUESTIONS = (
    "Could you assess the overall quality of the image and elaborate on your evaluation?",
    "How would you rate the image's quality, and what factors contribute to your assessment?",
    "Can you provide a detailed evaluation of the image's quality?",
    "Please evaluate the image's quality and provide your reasons.",
    "How do you perceive the quality of the image, and what aspects influence your judgment?",
    "Offer an assessment of the image's quality, highlighting any strengths or weaknesses.",
    "What is your opinion on the quality of the image? Explain your viewpoint.",
    "Assess the quality of the image with detailed reasons.",
    "How does the image's quality impact its overall effectiveness or appeal?",
    "Evaluate the image's quality and justify your evaluation.",
    "How about the overall quality of the image, and why?",
    "Provide a thorough evaluation of the image's quality.",
    "Examine the image's quality by considering factors influencing its clarity.",
    "Analyze the image's quality, and detail your findings.",
    "Provide a comprehensive assessment of the image's quality, including both strengths and areas for improvement.",
    "Assess the image's quality from a professional standpoint.",
    "Evaluate the image's clarity and explain how it contributes to the overall quality.",
    "How would you rate the overall quality of the image, and why?",
    "What is your opinion on the image's quality? Elaborate on your evaluation.",
    "Evaluate the quality of the image and provide a comprehensive explanation.",
)
# gen_json_refAB_detail.py; the no-reference set is the same (refAB2AB_*.py rewrite answers only).
COMPARISON_QUESTIONS = (
    "Compare the overall quality of Image A with Image B and provide a comprehensive explanation.",
    "Which image has better visual quality, Image A or Image B? Can you explain the comparison results?",
    "Evaluate the general visual appeal and quality of both Image A and Image B, and elaborate on which one excels.",
    "Discuss the overall impression and quality of Image A versus Image B, and justify your assessment.",
    "Compare the overall quality between Image A and Image B, and justify your comparison results.",
    (
        "Assess the overall visual quality of Image A and Image B, discussing which one delivers a more"
        " compelling visual quality."
    ),
    (
        "Which image demonstrates higher overall quality, Image A or Image B? Please provide detailed"
        " reasoning for your evaluation."
    ),
    "Analyze the overall quality of both Image A and Image B, and explain which image stands out.",
    (
        "Compare the perceived quality of Image A with Image B, providing insights into their respective"
        " strengths and weaknesses."
    ),
    "Discuss the visual quality of Image A and Image B, and elaborate on which one appears more appealing.",
    "Can you evaluate the overall quality in both Image A and Image B, and explain which one is superior?",
    (
        "Compare the overall visual impact and impression of Image A versus Image B, and justify your"
        " assessment of their quality."
    ),
    "Which image exhibits higher overall quality: Image A or Image B? Please explain your reasoning.",
    "Evaluate the visual quality in Image A and Image B, providing insights into their comparative strengths.",
    "Compare the overall quality between Image A and Image B, and discuss which one appears more appealing.",
    "Assess the visual quality of both Image A and Image B, and explain which one is better.",
    "Which image demonstrates superior quality: Image A or Image B? Please elaborate on your evaluation.",
    (
        "Discuss the overall impression of Image A versus Image B, and justify your assessment of their"
        " comparative quality."
    ),
    (
        "Compare the visual quality of Image A with Image B, providing detailed insights into their"
        " respective strengths and weaknesses."
    ),
    "Evaluate the overall quality of Image A and Image B, and explain which one has higher quality.",
)

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
DISTORTION_NAMES = (
    "noise",
    "blur",
    "compression",
    "oversharpening",
    "pixelation",
    "color quantization",
    "insufficient saturation",
    "overly high saturation",
    "insufficient contrast",
    "overly high contrast",
    "insufficient brightness",
    "overly high brightness",
)
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
