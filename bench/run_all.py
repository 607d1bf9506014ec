"""Run every benchmark in turn with its default settings (`make bench`); each prints its own ratios.

    .venv/bin/python bench/run_all.py [name ...]
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["regret", "assignment", "outcomes", "results", "ingest", "recommendations", "training"]


def main() -> int:
    """Run the named benchmarks (all by default); answer the first failing exit code."""
    names = sys.argv[1:] or ORDER
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(ORDER)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n== bench/{name}.py", flush=True)
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py")])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
