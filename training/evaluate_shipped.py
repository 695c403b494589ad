"""The shipped recipe's model on the test photos, from the cached training features, without retraining.

    python training/evaluate_shipped.py [--cache DIR] [--model FILE] [--photos-to DIR]

train_signal.py measures once, on the test photos (a fifth of each source), the model it fitted without them,
and ships the same recipe refitted on every photo. This script repeats that measurement on the feature cache
train_signal.py filled, with the same split and the engine's own decision (numpy trees, thresholds, calibration,
the rules for monochrome and blank frames), and prints the same tables: the check that the figures in
docs/signal-validation.md still hold for the code and the features of this checkout. The model is the one
measured on the test photos that train_signal.py left in the training cache, which must be the one the
packaged model names (`checked_by`); `--model` measures another file (a packaged model that saw the test
photos is refused: its figures there would mean nothing).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from iqa_cli.engines.signal.model import MODEL_FILE, read_model, shipped_model
from training import train_signal as T


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("--model", type=Path, default=None, help="a model file (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=0, help="train_signal.py's --seed (it picks the test photos)")
    parser.add_argument(
        "--photos-to",
        type=Path,
        default=None,
        help="also copy the test photos (the clean originals) into this folder, for `iqa eval --make-set`",
    )
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    from training import photos as photo_source

    cache = T.existing_feature_cache(parser, args.cache)
    version = (pq.read_schema(cache).metadata or {}).get(b"code", b"").decode()
    if version != T._code_version():
        print(f"note: the cache was measured by other feature code ({version}, this checkout's is "
              f"{T._code_version()}): rerun train_signal.py for this checkout's features")  # fmt: skip
    _, test = T.cached_split(cache, args.seed)
    try:
        model = read_model(args.model or measured_model_file(cache.parent))
    except LookupError as exc:
        parser.error(str(exc))
    if model.info.get("test_photos") == 0:
        parser.error(f"model {model.info.get('id')} was fitted on the test photos too: measure its check model")
    report = T.engine_tables(test, model)
    print(f"model {model.info.get('id')} on the test photos of {cache}:")
    T.print_report(report)
    if args.photos_to is not None:
        _copy_photos(sorted(set(test.photo)), args.cache or photo_source.default_cache(), args.photos_to)
    return 0


def measured_model_file(folder: Path) -> Path:
    """The model file train_signal.py measured on the test photos for the packaged model: the packaged one when it
    never saw them, else the check model it names (`checked_by`) in the training cache `folder`; LookupError when
    that file is missing or is another model."""
    shipped = shipped_model()
    wanted = shipped.info.get("checked_by")
    if wanted is None:
        return MODEL_FILE
    check_file = folder / "signal-check-model.json.gz"
    found = read_model(check_file).info.get("id") if check_file.exists() else None
    if found != wanted:
        state = "missing" if found is None else f"model {found}"
        raise LookupError(f"{check_file} is {state}, not {wanted}: run train_signal.py on this checkout to write it")
    return check_file


def _copy_photos(keys: list[str], photo_cache: Path, folder: Path) -> None:
    """Copy the photos named by their training keys ("source/name") into folder, as source__name with the file's
    suffix (the bundled ones are where train_signal.py writes them, beside the photo cache)."""
    from training import photos as photo_source

    found = photo_source.cached_photos(photo_cache) + photo_source.bundled_photos(photo_cache.parent / "bundled")
    path_of = {T.photo_key(photo): photo.path for photo in found}
    folder.mkdir(parents=True, exist_ok=True)
    for key in keys:
        name = key.replace("/", "__")
        source = Path(path_of[key])
        if not name.lower().endswith(source.suffix.lower()):  # the bundled photos' keys have no suffix
            name += source.suffix
        shutil.copyfile(source, folder / name)
    print(f"{len(keys)} test photos copied to {folder}")


if __name__ == "__main__":
    raise SystemExit(main())
