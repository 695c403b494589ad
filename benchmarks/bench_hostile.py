"""What hostile files cost: EXIF parsing of a fan-out TIFF, and the peak memory of refusing a PNG bomb (a script).

    python benchmarks/bench_hostile.py [--pointers 600] [--quick]

1. A TIFF whose IFD0 holds `--pointers` GPSInfo entries all pointing at one GPS IFD of as many text entries
   (`iqa_cli.testing.images.gps_fan_out_tiff`): exifread alone re-parses the GPS IFD for every pointer, so its
   cost grows with pointers squared; `read_exif` is bounded. Both are timed on the same bytes, in one run, and
   the ratio is printed (3,000 pointers, a ~4 MB file, took exifread about a minute here: the default is
   smaller so that the script ends in seconds).
2. A 40000 x 40000 1-bit PNG of ~200 KB with its eXIf chunk after the pixel data, loaded by `load_image` in a
   fresh process: its peak resident memory (VmHWM) and the error code. Decoding it would take 1.6 GB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import exifread

from iqa_cli.audit.exif import read_exif
from iqa_cli.testing.images import bomb_png, gps_fan_out_tiff

_PEAK = """
import json, sys
from iqa_cli.audit.load import load_image
from iqa_cli.images import DecodePlan

result = load_image(sys.argv[1], DecodePlan(long_side=64))
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"code": getattr(result, "code", None), "peak_mib": peak_kib / 1024}))
"""


def _best_of(repeats: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pointers", type=int, default=600, help="GPSInfo pointers in the fan-out TIFF")
    parser.add_argument("--quick", action="store_true", help="100 pointers (for the test suite)")
    args = parser.parse_args()
    pointers = 100 if args.quick else args.pointers
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    print(f"machine: {machine}; Python {platform.python_version()}, exifread {exifread.__version__}")

    tiff = gps_fan_out_tiff(pointers)
    info = read_exif(tiff)
    assert info.camera_make == "Canon", info  # the bounded parse still reads the camera fields
    raw = _best_of(1, lambda: exifread.process_file(io.BytesIO(tiff), details=False, extract_thumbnail=False))
    bounded = _best_of(5, lambda: read_exif(tiff))
    print(f"fan-out TIFF, {pointers} pointers, {len(tiff) / 1e6:.2f} MB:")
    print(f"  exifread.process_file   {raw * 1000:10.1f} ms")
    print(f"  iqa read_exif           {bounded * 1000:10.3f} ms   ({raw / bounded:,.0f}x less)")

    if not Path("/proc/self/status").exists():
        print("PNG bomb: skipped (reads the peak from /proc, Linux only)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        bomb = Path(tmp) / "bomb.png"
        bomb.write_bytes(bomb_png(40_000, 40_000, b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
        done = subprocess.run([sys.executable, "-c", _PEAK, str(bomb)], capture_output=True, text=True, check=True)
        found = json.loads(done.stdout)
        size_kb = bomb.stat().st_size / 1e3
    print(f"PNG bomb, 40000 x 40000 declared, {size_kb:.0f} kB on disk: "
          f"{found['code']}, peak {found['peak_mib']:.1f} MiB in a fresh process")  # fmt: skip


if __name__ == "__main__":
    main()
