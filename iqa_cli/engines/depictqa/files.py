"""The DepictQA models folder: where each part lives, fetching it, and what is installed (`verify.py` verifies it)."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from iqa_cli.errors import ModelFilesError, UsageError, first_line

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
    already in `root` are not fetched again. `on_item` is told before each repository starts. One request
    first checks that the hub answers at all (within HF_HUB_ETAG_TIMEOUT), so an unreachable host is one
    ModelFilesError at once rather than huggingface_hub's half a minute of retries per repository; its own
    log lines and warnings are silenced meanwhile unless HF_HUB_VERBOSITY asks for them.
    """
    import huggingface_hub
    from huggingface_hub import constants

    root = Path(root).expanduser()
    plan = download_plan(variant, minilm=minilm)
    with _quiet_hub():
        if not _offline():
            # The endpoint huggingface_hub read from HF_ENDPOINT when imported, which its calls below use.
            _require_reachable(constants.ENDPOINT, root)
        root.mkdir(parents=True, exist_ok=True)
        for item in plan:
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
                    f"Could not fetch {item.repo_id} into {root / item.folder}: {first_line(exc).rstrip('.')}. "
                    f"{_hub_hint()}Re-run the command to resume; finished files are kept."
                ) from exc
    return locate(root, variant)


# Proxy variables httpx and requests (huggingface_hub's HTTP clients) read, in the order they prefer them.
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
# Loggers that print a line per retry or per failed connection while huggingface_hub works.
_HUB_LOGGERS = ("huggingface_hub", "httpx", "httpx2", "httpcore", "urllib3")


def _require_reachable(endpoint: str, root: Path) -> None:
    """One request to the hub's endpoint, without retries; any HTTP answer will do. Raises ModelFilesError
    naming the host and what to do when no answer comes (no DNS, no route, refused, a dead proxy, a timeout)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        # get_session() is huggingface_hub's own client: its proxies, certificates and headers.
        get_session().request("HEAD", endpoint, timeout=float(constants.HF_HUB_ETAG_TIMEOUT))
    except Exception as exc:
        raise ModelFilesError(
            f"Cannot reach {urlsplit(endpoint).netloc or endpoint} ({type(exc).__name__}: "
            f"{first_line(exc, 160).rstrip('.')}). {_network_hint(endpoint)} Or copy the files in by hand, "
            f"into the folders `iqa model info {root}` lists, and run `iqa model check {root}`."
        ) from exc


def _network_hint(endpoint: str) -> str:
    """What to check when the hub does not answer: the connection, the proxy variables, HF_ENDPOINT."""
    set_proxies = [name for name in _PROXY_VARIABLES if os.environ.get(name)]
    proxies = f"{', '.join(set_proxies)} set" if set_proxies else "none of HTTPS_PROXY, HTTP_PROXY, ALL_PROXY is set"
    if os.environ.get("HF_ENDPOINT"):
        return f"Check the network connection, the proxy variables ({proxies}) and HF_ENDPOINT ({endpoint})."
    return f"Check the network connection and the proxy variables ({proxies}), or set HF_ENDPOINT to a mirror."


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub's log lines (a warning per retry) and Python warnings off for the block, then restored;
    left alone when HF_HUB_VERBOSITY is set, since then someone asked to see them."""
    if os.environ.get("HF_HUB_VERBOSITY"):
        yield
        return
    loggers = [logging.getLogger(name) for name in _HUB_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _offline() -> bool:
    """Whether HF_HUB_OFFLINE asks huggingface_hub not to touch the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_hint() -> str:
    """A hint about the environment variables that most often explain a failed download."""
    if _offline():
        return "HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it, or copy the files in by hand. "
    if os.environ.get("HF_ENDPOINT"):
        return f"Downloads go to HF_ENDPOINT={os.environ['HF_ENDPOINT']}; check that it is reachable. "
    return "Check the network connection (or set HF_ENDPOINT to a mirror). "


# ------------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class InstalledPart:
    """One part of the models folder as found on disk. `problem` says why a checkpoint that is present cannot
    be the variant its folder is for (not a PyTorch file, not DepictQA2 weights, Abstractor weights or not);
    nothing else is verified here (`verify.check` does that)."""

    name: str
    repo_id: str
    path: Path
    present: bool
    size_bytes: int
    problem: str | None = None


def info(root: Path) -> list[InstalledPart]:
    """What is installed under `root`: the base models, every DepictQA variant and MiniLM, with sizes.

    Each checkpoint that is present is looked at from its tensor names alone (no torch, no tensor read), so a
    file that is not a DepictQA2 checkpoint is never listed as a variant."""
    # checkpoint.py imports this module, so it is imported here, when needed.
    from iqa_cli.engines.depictqa.checkpoint import checkpoint_problem

    root = Path(root).expanduser()
    clip = root / CLIP_DIR if (root / CLIP_DIR).is_dir() or not (root / CLIP_ARCHIVE).is_file() else root / CLIP_ARCHIVE
    parts = [("vicuna", VICUNA_REPO, root / LLM_DIR, "config.json"), ("clip", CLIP_REPO, clip, "config.json")]
    parts += [(v, repo, root / variant_dir_name(v), CHECKPOINT) for v, repo in VARIANTS.items()]
    parts.append(("minilm", MINILM_REPO, root / MINILM_DIR, "config.json"))
    found = []
    for name, repo, path, marker in parts:
        present = path.is_file() or (path / marker).is_file()
        problem = checkpoint_problem(path / CHECKPOINT, name) if present and name in VARIANTS else None
        found.append(InstalledPart(name, repo, path, present, _size(path) if present else 0, problem))
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


def vicuna_context_problem(config: Mapping[str, Any]) -> str | None:
    """Why an LLM's config.json is not Vicuna-7B v1.5's 4k-context one, or None.

    The -16k variant loads without error and answers garbage: DepictQA was trained on the 4k model. Both the
    loader and `iqa model check` ask this, so the rule lives here once."""
    context = config.get("max_position_embeddings")
    scaling = _rope_scaling(config)
    if context == VICUNA_CONTEXT and not scaling:
        return None
    hint = " (this looks like lmsys/vicuna-7b-v1.5-16k)" if scaling or (context or 0) > VICUNA_CONTEXT else ""
    return (
        f"max_position_embeddings={context}, rope_scaling={scaling}{hint}: DepictQA was trained on "
        f"{VICUNA_REPO} (4096 positions, no rope scaling) and gives garbage answers with any other context "
        f"setting. Replace the folder with {VICUNA_REPO}: delete it and run `iqa model download`."
    )


def _rope_scaling(config: Mapping[str, Any]) -> Any:
    """The RoPE scaling a config asks for, or None; transformers 5 writes the unscaled case as
    `rope_parameters` with rope_type "default"."""
    for key in ("rope_scaling", "rope_parameters"):
        value = config.get(key)
        if isinstance(value, Mapping) and value.get("rope_type", value.get("type")) in ("default", None):
            continue
        if value:
            return value
    return None
