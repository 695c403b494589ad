"""The size of iqa's core install: a fresh venv, `pip install CHECKOUT`, its lib/ measured (a script).

    python benchmarks/installed_size.py [CHECKOUT] [--top 10] [--keep]

Creates a virtual environment without pip in a temporary folder, installs CHECKOUT (default: this
repository; no extras) into it with this interpreter's pip (`pip --python`), then prints the disk use of the
venv's lib/ as `du` counts it (allocated blocks, each file once) and the largest distributions, each the sum of
the files its RECORD lists. Needs the package index that pip is configured with; nothing else is downloaded.
To measure another state of the repository, unpack it first: `git archive COMMIT | tar -x -C /tmp/before`.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MB = 1e6


def disk_use(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes allocated to the file or the tree at `path`, each inode once (du's count); links not followed."""
    seen = set() if seen is None else seen
    total = 0
    for entry in [path] if not path.is_dir() or path.is_symlink() else path.rglob("*"):
        st = entry.lstat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def distribution_sizes(site_packages: Path) -> dict[str, int]:
    """{distribution name: bytes allocated to the files its RECORD lists}; what no RECORD lists is '(other)'."""
    seen: set[tuple[int, int]] = set()
    sizes: dict[str, int] = {}
    for record in sorted(site_packages.glob("*.dist-info/RECORD")):
        name = record.parent.name.removesuffix(".dist-info").replace("-", " ", 1)  # "numpy 2.4.6"
        with record.open(newline="") as rows:
            files = [site_packages / row[0] for row in csv.reader(rows) if row]
        sizes[name] = sum(disk_use(f, seen) for f in files if f.is_file() and f.resolve().is_relative_to(site_packages))
    sizes["(other)"] = disk_use(site_packages, seen)  # what remains unseen: files no RECORD names, and folders
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkout", nargs="?", type=Path, default=REPO, help="the folder to install (default: here)")
    parser.add_argument("--top", type=int, default=10, help="how many of the largest distributions to list")
    parser.add_argument("--keep", action="store_true", help="keep the venv (its path is printed)")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="iqa-size-"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    started = time.perf_counter()
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(checkout)]
    subprocess.run(pip, check=True)
    seconds = time.perf_counter() - started
    lib = venv / ("Lib" if os.name == "nt" else "lib")
    site_packages = next(lib.glob("**/site-packages"))
    sizes = distribution_sizes(site_packages)
    total = disk_use(lib)
    print(f"core install of {checkout}: {total / MB:.1f} MB in the venv's lib/ ({len(sizes) - 1} distributions)")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {name:28s} {size / MB:8.1f} MB")
    share = venv / "share"
    if share.is_dir():
        print(f"  (and {disk_use(share) / 1e3:.0f} kB of man pages and completions in share/)")
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"load {load:.2f} at the start and {os.getloadavg()[0]:.2f} at the end; pip install took {seconds:.0f} s"
    )
    if args.keep:
        print(f"venv kept: {venv}")
    else:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
