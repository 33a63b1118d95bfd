"""Run every benchmark: ``--quick`` (a few minutes, small sizes; results/*_quick.json) or
``--full`` (results/render.json, results/pipeline.json: the tables in README.md).

    python benchmarks/run.py --quick
    python benchmarks/run.py --full
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    args = ap.parse_args()
    import bench_build_memory
    import bench_pipeline
    import bench_render

    bench_render.main(["--quick"] if args.quick else [])
    if args.quick:
        bench_pipeline.main(["--sizes", "500", "2000", "--s3-size", "256", "--name", "pipeline_quick"])
        bench_build_memory.main(["--sizes", "2000", "--name", "build_memory_quick"])
    else:
        bench_pipeline.main(["--sizes", "10000", "50000", "200000", "--s3-size", "2000"])
        bench_build_memory.main(["--sizes", "10000", "40000", "200000", "--default-malloc"])


if __name__ == "__main__":
    main()
