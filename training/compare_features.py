"""Do two checkouts compute the same signal features? On the cached training photos, as an audit loads them.

    python training/compare_features.py OLD_CHECKOUT [--new DIR] [--photos DIR]

The shipped model was fitted on the features of the commit that trained it; any later change to the loader, the
measurements or the features must leave them as they were, or the model sees inputs it was not fitted on. Each
checkout (e.g. `git worktree add /tmp/old COMMIT`) computes `features.extract` of every photo in the training
photo cache in its own interpreter, with that checkout first on the path; the script prints how many photos and
values were compared and every feature that differs anywhere, with its largest difference. Exit 1 on any
difference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run inside each checkout's interpreter: the features of every photo, by file name (an error code for a photo
# the loader refuses). NaN is written as null, so that equal NaNs compare equal.
_DUMP = """
import json, math, sys
from pathlib import Path
from iqa_cli.audit.load import load_image
from iqa_cli.engines.signal import features
if not Path(features.__file__).resolve().is_relative_to(Path.cwd().resolve()):
    sys.exit(f"imported {features.__file__}, not the checkout's")
rows = {}
for path in sorted(p for p in Path(sys.argv[1]).rglob("*") if p.is_file()):
    loaded = load_image(str(path), features.DECODE_PLAN)
    if not hasattr(loaded, "pixels"):
        rows[path.name] = loaded.code
        continue
    rows[path.name] = {k: None if math.isnan(v) else v for k, v in features.extract(loaded).items()}
print(json.dumps(rows))
"""


def features_of(checkout: Path, photos: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _DUMP, str(photos)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        cwd=checkout,
    )
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path, help="the other checkout")
    parser.add_argument("--new", type=Path, default=ROOT, help="this checkout by default")
    parser.add_argument("--photos", type=Path, default=None, help="default: training/photos.py's cache")
    args = parser.parse_args(argv)
    if args.photos is None:
        sys.path.insert(0, str(ROOT))
        from training import photos as photo_source

        args.photos = photo_source.default_cache()
    old, new = features_of(args.old, args.photos), features_of(args.new, args.photos)
    values = 0
    worst: dict[str, float] = {}
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if not (isinstance(a, dict) and isinstance(b, dict)):
            if a != b:
                print(f"{name}: {a!r} against {b!r}")
                worst["(loading)"] = math.inf
            continue
        for feature in sorted(set(a) | set(b)):
            values += 1
            x, y = a.get(feature), b.get(feature)
            if x != y:
                gap = math.inf if x is None or y is None else abs(x - y)
                worst[feature] = max(worst.get(feature, 0.0), gap)
    print(f"{len(set(old) | set(new))} photos in {args.photos}, {values} feature values compared")
    for feature, gap in sorted(worst.items()):
        print(f"  differs: {feature} (largest difference {gap:.3g})")
    print("identical" if not worst else f"{len(worst)} features differ")
    return 1 if worst else 0


if __name__ == "__main__":
    raise SystemExit(main())
