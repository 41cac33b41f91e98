"""``python -m benchmarks.child MODULE:FUNCTION PARAMS_JSON``: run one measurement, print its JSON."""

from __future__ import annotations

import importlib
import json
import sys


def main() -> None:
    target, params = sys.argv[1], json.loads(sys.argv[2])
    module, _, func = target.partition(":")
    result = getattr(importlib.import_module(f"benchmarks.{module}"), func)(params)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
