"""The decode-only side of bench_audit.py: N spawned processes that only read, decode and resize files.

    python benchmarks/decode_only.py WORKERS FILE...

Each file is decoded with the signal engine's decode plan by iqa's own `decode_pixels`, the same pixels
`iqa audit` makes; nothing else is done with them. This is the machine's limit the audit is measured against.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def decode(path: str) -> None:
    from iqa_cli.audit.load import decode_pixels
    from iqa_cli.engines.signal.features import DECODE_PLAN

    with open(path, "rb") as handle:
        decode_pixels(handle.read(), DECODE_PLAN)


if __name__ == "__main__":
    with ProcessPoolExecutor(int(sys.argv[1]), mp_context=get_context("spawn")) as pool:
        list(pool.map(decode, sys.argv[2:], chunksize=1))
