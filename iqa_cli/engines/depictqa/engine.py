"""The `depictqa` engine: DepictQA-Wild answering the distortion and comparison questions it was trained on.

Importable without torch (the plugin registry imports it to list engines); the model code is imported
by `create` only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from iqa_cli.engines.base import Assessment, AssessRequest, Comparison, Engine, EngineOptions, Prepared, Preparer
from iqa_cli.engines.depictqa import confidence as conf
from iqa_cli.engines.depictqa import files, questions
from iqa_cli.engines.depictqa.preprocess import DepictQAPreparer, config_for_variant, depictqa_decode_plan
from iqa_cli.engines.depictqa.prompts import ImageSlot, build_chunks, task_type
from iqa_cli.errors import EngineUnavailable, IqaError
from iqa_cli.images import PIXEL_MODES, DecodePlan
from iqa_cli.install import install_hint

if TYPE_CHECKING:
    import torch

    from iqa_cli.engines.depictqa.generate import Generated
    from iqa_cli.engines.depictqa.model import DepictQAModel
    from iqa_cli.engines.depictqa.tokenizer import PromptTokenizer

DEFAULT_MAX_NEW_TOKENS = 400  # the authors' setting; brief answers stop after a few tokens anyway
_ENCODE_CHUNK = 64  # images per vision-tower forward: 64 x 768 tokens of ViT-L activations stay near 1 GB
_REQUIRED = ("torch", "transformers", "sentencepiece", "safetensors")


class Ask(NamedTuple):
    """One question to the model."""

    task: str  # the prompt layout (prompts.task_type)
    question: str
    images: dict[ImageSlot, torch.Tensor]  # the image embeddings [N, hidden] of each slot


def _models_root(options: EngineOptions) -> Path:
    return Path(options.model_dir).expanduser() if options.model_dir else files.default_models_dir()


class DepictQAEngine(Engine):
    """DepictQA-Wild (Vicuna-7B + CLIP ViT-L/14 + LoRA), greedy answers, the authors' confidence rules."""

    name = "depictqa"
    version = "1"
    description = "DepictQA-Wild vision-language model: names distortions in words, compares images"
    accelerated = True

    def __init__(
        self,
        model: DepictQAModel,
        tokenizer: PromptTokenizer,
        *,
        variant: str,
        device: str,
        dtype: str,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        draft_decode: bool = False,
        pixels: str = "iqa",
        minilm: Path | None = None,
        token_budget: int | None = None,
        max_rows: int | None = None,
        prefill_tokens: int | None = None,
        brief_max_new_tokens: int | None = None,
        ignore_eos: bool = False,
        static_kv: bool = False,
        compile_decode: bool = False,
    ) -> None:
        """`pixels`: "iqa" (iqa's conversion to RGB, each difference from the authors' loader noted on the row)
        or "authors" (their `Image.open(path).convert("RGB")` exactly; no draft decoding then).

        Generation is continuously batched (`scheduler.ContinuousBatcher`); these bound it:

        - `token_budget`: KV-cache tokens, rows x (padded length + tokens still to generate). None: sized from
          the free GPU memory on CUDA at each call, 8192 on the CPU.
        - `max_rows`: rows decoded together (None: 512 on CUDA, 64 on the CPU).
        - `prefill_tokens`: rows x padded prompt length of one prefill forward (None: 16384 CUDA, 4096 CPU).
        - `brief_max_new_tokens`: a separate cap for the brief questions and every re-ask (None: `max_new_tokens`).
        - `ignore_eos`: every answer runs to its cap (benchmarks with forced lengths only: answers change).
        - `static_kv`: decode in fixed-shape blocks with a static KV cache instead (`static_decode.py`; the same
          tokens, no continuous batching), and `compile_decode` captures its step with torch.compile: a path
          to time on a GPU, off by default.
        """
        self.model = model
        self.tokenizer = tokenizer
        self.variant = variant
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        if pixels not in PIXEL_MODES:
            raise ValueError(f"unknown pixels mode {pixels!r}; choose from {', '.join(PIXEL_MODES)}")
        self.pixels = pixels
        self.draft_decode = draft_decode and pixels != "authors"  # the authors' loader decodes in full
        cuda = device.startswith("cuda")
        self.token_budget = token_budget if token_budget is not None else (None if cuda else 8192)
        self.max_rows = max_rows or (512 if cuda else 64)
        self.prefill_tokens = prefill_tokens or (16384 if cuda else 4096)
        self.brief_max_new_tokens = brief_max_new_tokens
        self.ignore_eos = ignore_eos
        self.static_kv = static_kv
        self.compile_decode = compile_decode
        self.last_stats: Any = None  # the scheduler's BatcherStats of the latest generation call
        self.preprocess = config_for_variant(variant)
        self.special_ids = conf.SpecialIds.from_tokenizer(tokenizer)
        self._minilm_path = minilm
        self._embedder: conf.Embedder | None = None
        self._embedder_failed = False
        self._chunk_ids: dict[str, list[int]] = {}

    # -------------------------------------------------------------------------------------- set-up
    @classmethod
    def availability(cls, options: EngineOptions) -> str | None:
        missing = [m for m in _REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            return f"{', '.join(missing)} not installed; install them with {install_hint('depictqa')}"
        try:
            files.locate(_models_root(options))
        except IqaError as exc:
            return str(exc)
        return None

    @classmethod
    def create(cls, options: EngineOptions) -> DepictQAEngine:
        reason = cls.availability(options)
        if reason is not None:
            raise EngineUnavailable(f"the depictqa engine cannot run: {reason}")
        import torch

        from iqa_cli.engines.depictqa.loading import load_depictqa, parse_dtype

        layout = files.locate(_models_root(options))
        device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dtype = parse_dtype(options.dtype, device)
        except ValueError as exc:
            raise EngineUnavailable(str(exc)) from exc
        if options.pixels not in PIXEL_MODES:
            raise EngineUnavailable(f"unknown pixels mode {options.pixels!r}; choose from {', '.join(PIXEL_MODES)}")
        model, tokenizer = load_depictqa(layout, device=device, dtype=dtype)
        return cls(
            model,
            tokenizer,
            variant=layout.variant,
            device=device,
            dtype=str(dtype).removeprefix("torch."),
            max_new_tokens=options.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            draft_decode=options.draft_decode,
            pixels=options.pixels,
            minilm=layout.minilm,
        )

    @property
    def decode_plan(self) -> DecodePlan:
        plan = replace(depictqa_decode_plan(self.preprocess), pixels=self.pixels, authors_notes=True)
        return replace(plan, draft=True) if self.draft_decode and self.pixels != "authors" else plan

    def settings(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "dtype": self.dtype,
            "device": self.device.split(":")[0],
            "max_new_tokens": self.max_new_tokens,
            "resize": self.preprocess.resize,
            "max_size": self.preprocess.max_size,
            "draft_decode": self.draft_decode,
            "pixels": self.pixels,
        }

    @property
    def preferred_batch_size(self) -> int:
        """On a GPU, enough images that continuous batching always has prompts waiting to join."""
        return 256 if self.device.startswith("cuda") else 8

    def preparer(self) -> Preparer:
        return DepictQAPreparer(self.preprocess)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # ----------------------------------------------------------------------------------- questions
    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        """Distortion identification for every image; with detail, the assessment reasoning too."""
        if not batch:
            return []
        embeds = self._encode([item.payload for item in batch])
        task = task_type(compare=False, reference=False)
        question = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)
        asks = [Ask(task, question, {ImageSlot.A: e}) for e in embeds]
        texts, scores = self._answer_with_confidence(asks, compare=False)
        details, detail_scores, detail_questions = self._details(
            asks, questions.ASSESSMENT_REASONING, request, compare=False
        )
        return [
            Assessment(
                task=questions.DISTORTION_IDENTIFICATION,
                question=question,
                answer=questions.clean_answer(text),
                distortions=questions.parse_distortions(text),
                confidence=score,
                detail=detail,
                detail_question=detail_question,
                detail_confidence=detail_score,
            )
            for text, score, detail, detail_score, detail_question in zip(
                texts, scores, details, detail_scores, detail_questions, strict=True
            )
        ]

    def compare(
        self, pairs: Sequence[tuple[Prepared, Prepared, Prepared | None]], request: AssessRequest
    ) -> list[Comparison]:
        """Instant rating ("Image A" / "Image B") for each pair, given its reference when there is one."""
        if not pairs:
            return []
        payloads: list[Any] = []
        for a, b, ref in pairs:
            payloads += [a.payload, b.payload] + ([ref.payload] if ref is not None else [])
        embeds = iter(self._encode(payloads))
        asks: list[Ask] = []
        for _, _, ref in pairs:
            slots = {ImageSlot.A: next(embeds), ImageSlot.B: next(embeds)}
            if ref is not None:
                slots[ImageSlot.REFERENCE] = next(embeds)
            reference = ref is not None
            question = questions.default_question(questions.INSTANT_RATING, reference=reference)
            asks.append(Ask(task_type(compare=True, reference=reference), question, slots))
        texts, scores = self._answer_with_confidence(asks, compare=True)
        winners = [questions.parse_winner(t) for t in texts]
        details, detail_scores, _ = self._details(asks, questions.COMPARISON_REASONING, request, compare=True)
        out = []
        rows = zip(asks, texts, scores, winners, details, detail_scores, strict=True)
        for ask, text, score, winner, detail, detail_score in rows:
            # The rating rule found no "Image A"/"Image B": keep the words, say A with no confidence.
            out.append(
                Comparison(
                    winner=winner or "A",
                    answer=questions.clean_answer(text),
                    confidence=score if winner else 0.0,
                    question=ask.question,
                    detail=detail,
                    detail_confidence=detail_score,
                )
            )
        return out

    # ------------------------------------------------------------------------------------ internals
    def _details(
        self, asks: Sequence[Ask], task: str, request: AssessRequest, *, compare: bool
    ) -> tuple[list[str | None], list[float | None], list[str | None]]:
        """With detail: the reasoning question on the same images, its answers, their confidences, the questions."""
        if not request.detail:
            return [None] * len(asks), [None] * len(asks), [None] * len(asks)
        detail_asks = [
            Ask(a.task, questions.default_question(task, reference=ImageSlot.REFERENCE in a.images), a.images)
            for a in asks
        ]
        # A short answer to the reasoning question is scored by the re-ask rule, exactly as a brief one is.
        texts, scores = self._answer_with_confidence(detail_asks, compare=compare, max_new_tokens=self.max_new_tokens)
        return [questions.clean_answer(t) for t in texts], list(scores), [a.question for a in detail_asks]

    def _encode(self, payloads: Sequence[Any]) -> list[torch.Tensor]:
        """Prepared pixels (float32 [3, H, W] arrays) -> image embeddings [N_i, hidden] on the device.

        Images of one size share a vision forward (`encode_images` groups them), at most `_ENCODE_CHUNK` at a
        time to bound the tower's activations. On CUDA each group is staged in pinned memory and copied
        without blocking the host, which meanwhile builds the next group.
        """
        import numpy as np
        import torch

        out: list[torch.Tensor | None] = [None] * len(payloads)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(payloads):
            by_size.setdefault(tuple(np.shape(p)), []).append(i)
        cuda = self.device.startswith("cuda")
        with torch.inference_mode():
            for indices in by_size.values():
                for start in range(0, len(indices), _ENCODE_CHUNK):
                    chunk = indices[start : start + _ENCODE_CHUNK]
                    pixels = torch.from_numpy(np.stack([np.asarray(payloads[i], dtype=np.float32) for i in chunk]))
                    if cuda:
                        pixels = pixels.pin_memory().to(self.device, non_blocking=True)
                    for i, e in zip(chunk, self.model.encode_images(list(pixels)), strict=True):
                        out[i] = e
        return out  # type: ignore[return-value]

    def _segments(self, task: str, question: str) -> list[list[int] | ImageSlot]:
        """BOS, then each text chunk tokenized on its own (as the authors embed them), slots in between."""
        out: list[list[int] | ImageSlot] = [[self.tokenizer.bos_token_id]]
        for chunk in build_chunks(task, question):
            if isinstance(chunk, ImageSlot):
                out.append(chunk)
            else:
                if chunk not in self._chunk_ids:
                    if len(self._chunk_ids) > 256:
                        self._chunk_ids.clear()
                    self._chunk_ids[chunk] = self.tokenizer.encode(chunk)
                out.append(self._chunk_ids[chunk])
        return out

    def _prompt(self, ask: Ask) -> tuple[list[list[int] | None], list[torch.Tensor]]:
        """An ask as `embed_prompt` takes it: token segments with None at the image places, and the images."""
        segments = self._segments(ask.task, ask.question)
        slots = [s for s in segments if isinstance(s, ImageSlot)]
        missing = [s.value for s in slots if s not in ask.images]
        if missing:
            raise ValueError(f"task {ask.task} needs image(s) {', '.join(missing)}")
        return [None if isinstance(s, ImageSlot) else s for s in segments], [ask.images[s] for s in slots]

    def _ask(self, asks: Sequence[Ask], max_new_tokens: int) -> list[Generated]:
        """Greedy answers to `asks` through one continuously batched generation (see `scheduler.py`)."""
        import torch

        from iqa_cli.engines.depictqa.scheduler import ContinuousBatcher, cuda_token_budget

        with torch.inference_mode():
            prompts = []
            for ask in asks:
                segments, images = self._prompt(ask)
                prompts.append(self.model.embed_prompt(segments, images))
            llm = self.model.llm
            if self.static_kv:
                from iqa_cli.engines.depictqa.static_decode import StaticDecoder

                eos = -1 if self.ignore_eos else self.tokenizer.eos_token_id
                decoder = StaticDecoder(llm, eos_id=eos, max_rows=self.max_rows, compile=self.compile_decode)
                return decoder.generate(prompts, max_new_tokens)
            budget = self.token_budget
            if budget is None:  # CUDA: what fits now, after the weights, the prompts and other users
                budget = cuda_token_budget(llm, prefill_tokens=self.prefill_tokens, max_rows=self.max_rows)
            batcher = ContinuousBatcher(
                llm,
                eos_id=self.tokenizer.eos_token_id,
                token_budget=budget,
                max_rows=self.max_rows,
                prefill_tokens=self.prefill_tokens,
                ignore_eos=self.ignore_eos,
            )
            results = batcher.generate(prompts, max_new_tokens)
            self.last_stats = batcher.stats
        return results

    def _texts(self, generated: Sequence[Generated]) -> list[str]:
        return [self.tokenizer.decode(g.ids, skip_special_tokens=True) for g in generated]

    def _brief_limit(self) -> int:
        """The token cap of a question with the single-word tail (the brief questions and every re-ask)."""
        limit = self.max_new_tokens
        if self.brief_max_new_tokens is not None:
            limit = min(limit, self.brief_max_new_tokens)
        return limit

    def _answer_with_confidence(
        self, asks: Sequence[Ask], *, compare: bool, max_new_tokens: int | None = None
    ) -> tuple[list[str], list[float]]:
        """Answers to `asks` and their confidences, the re-ask rule applied in one batch.

        An answer of fewer than 22 words to a question without a single-word instruction (the reasoning
        questions, whose answers can come out short) is scored by asking again with the single-word tail,
        and the second answer's confidence is the first's, as in the authors' code. `max_new_tokens`
        caps the first answers (None: the brief cap); the re-asks are brief questions and get the brief cap.
        """
        limit = self._brief_limit()
        generated = self._ask(asks, limit if max_new_tokens is None else max_new_tokens)
        texts = self._texts(generated)
        scored, scored_texts = list(generated), list(texts)
        reask = [i for i, (a, t) in enumerate(zip(asks, texts, strict=True)) if conf.needs_reask(a.question, t)]
        if reask:
            again = self._ask([asks[i]._replace(question=conf.reask_question(asks[i].question)) for i in reask], limit)
            for i, g, t in zip(reask, again, self._texts(again), strict=True):
                scored[i], scored_texts[i] = g, t
        scores = [self._confidence(t, g, compare=compare) for t, g in zip(scored_texts, scored, strict=True)]
        return texts, scores

    def _confidence(self, text: str, generated: Generated, *, compare: bool) -> float:
        tokens = conf.AnswerTokens(list(generated.ids), list(generated.probs))
        embed = None if conf.is_brief(text) else self._minilm()
        pieces = self.tokenizer.convert_ids_to_tokens(generated.ids) if embed is not None else None
        value = conf.answer_confidence(text, tokens, self.special_ids, compare=compare, token_texts=pieces, embed=embed)
        return 0.0 if value is None else float(value)

    def _minilm(self) -> conf.Embedder | None:
        """all-MiniLM-L6-v2 for long answers' confidence, loaded on first need; None when not installed."""
        if self._embedder is None and not self._embedder_failed:
            from iqa_cli.engines.depictqa.loading import load_minilm

            try:
                self._embedder = load_minilm(self._minilm_path, device=self.device)
            except IqaError:
                self._embedder_failed = True  # such answers get confidence 0 and are flagged for review
        return self._embedder
