"""The Vicuna-v1 prompt DepictQA-Wild was trained on: system text, image tags and the chunk layout of each task type."""

from __future__ import annotations

from enum import Enum

# Source: XPixelGroup/DepictQA, src/model/conversations.py (system_dict, conv_vicuna_v1),
# src/model/utils/__init__.py (VISION_TAGS) and src/model/depictqa.py (fuse_vision_iqa,
# tokenize_query). The layout is the one the released checkpoints were trained with
# (config `llm_conv_type: vicuna_v1`, `unique_tag: true`); any other spacing changes the answers.

SYS_NR = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions. As an AI assistant, you are performing an image "
    "quality assessment task."
)
SYS_FR = SYS_NR + " A high-quality Reference Image is provided to assist the evaluation."

# Vicuna v1 separators as the authors compose them: turns are closed by " </s> " (the literal text,
# which the tokenizer turns into the EOS id 2) and the assistant role follows three spaces.
TURN_SEP = " </s> "
USER = "USER"
ASSISTANT = "ASSISTANT"

TAG_IMAGE = ("<Img>", "</Img>")
TAG_REFERENCE = ("<Img-Reference>", "</Img-Reference>")
TAG_A = ("<Img-A>", "</Img-A>")
TAG_B = ("<Img-B>", "</Img-B>")


class ImageSlot(Enum):
    """Where one image's embeddings go between the text chunks."""

    REFERENCE = "reference"
    A = "A"
    B = "B"


TASK_TYPES = (
    "quality_single_A_noref",
    "quality_single_A",
    "quality_single_B_noref",
    "quality_single_B",
    "quality_compare_noref",
    "quality_compare",
)


def task_type(*, compare: bool, reference: bool, image: ImageSlot = ImageSlot.A) -> str:
    """The task type for a question about one image (`image` A or B) or a comparison of A and B."""
    if compare:
        return "quality_compare" if reference else "quality_compare_noref"
    if image is ImageSlot.REFERENCE:
        raise ValueError("a single-image task asks about image A or B, not the reference")
    base = f"quality_single_{image.value}"
    return base if reference else f"{base}_noref"


def has_reference(task: str) -> bool:
    """Whether the task type shows the model a reference image first."""
    _check(task)
    return not task.endswith("_noref")


def system_prompt(task: str) -> str:
    """The system text of a task type: SYS_FR with a reference image, else SYS_NR."""
    return SYS_FR if has_reference(task) else SYS_NR


def image_slots(task: str) -> list[ImageSlot]:
    """The images a task type needs, in the order their embeddings are spliced in."""
    _check(task)
    slots = [ImageSlot.REFERENCE] if has_reference(task) else []
    if task.startswith("quality_compare"):
        return [*slots, ImageSlot.A, ImageSlot.B]
    return [*slots, ImageSlot.B if task.startswith("quality_single_B") else ImageSlot.A]


def build_chunks(task: str, question: str) -> list[str | ImageSlot]:
    """The prompt of one single-turn question: text chunks with image slots between them, no BOS.

    The model side prepends BOS (id 1), tokenizes every text chunk on its own without special
    tokens (as the authors' `emb_text` / `tokenize_query` do) and puts each slot's image
    embeddings in place. For a single image the tag is `<Img>` whether the image is A or B.
    """
    slots = image_slots(task)
    compare = task.startswith("quality_compare")
    chunks: list[str | ImageSlot] = []
    opening = system_prompt(task) + "\n\n"
    for slot in slots:
        label, (start, end) = _label_and_tags(slot, compare)
        chunks.append(f"{opening}{TURN_SEP}{label}: {start}")
        chunks.append(slot)
        # The next chunk opens by closing this image's tag.
        opening = end + "\n\n"
    chunks.append(f"{opening}{TURN_SEP}{USER}: {question}\n   {ASSISTANT}: ")
    return chunks


def _label_and_tags(slot: ImageSlot, compare: bool) -> tuple[str, tuple[str, str]]:
    if slot is ImageSlot.REFERENCE:
        return "Reference Image", TAG_REFERENCE
    if not compare:
        return "Image", TAG_IMAGE
    return (f"Image {slot.value}", TAG_A if slot is ImageSlot.A else TAG_B)


def _check(task: str) -> None:
    if task not in TASK_TYPES:
        raise ValueError(f"unknown DepictQA task type {task!r}; expected one of {', '.join(TASK_TYPES)}")
