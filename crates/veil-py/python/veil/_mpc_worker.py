"""One participant of :meth:`veil.mpc.Session.stats`, run as its own process."""

import json
import sys
from typing import List

import numpy as np

from veil.mpc import MpcError, dealer, party_stats, psi


def _main(argv: List[str]) -> int:
    """``python -m veil._mpc_worker dealer CONFIG LOW HIGH BINS MAX_ABS`` or
    ``python -m veil._mpc_worker party CONFIG ID VALUES.npy LOW HIGH BINS MAX_ABS``: one participant
    of :meth:`Session.stats`; ``python -m veil._mpc_worker psi CONFIG ID ITEMS.json NORMALIZE
    CARDINALITY_ONLY``: one side of :meth:`Session.psi`. Prints its result (JSON) on stdout."""
    try:
        if len(argv) == 6 and argv[0] == "psi":
            with open(argv[3], encoding="utf-8") as f:
                items = json.load(f)
            r = psi(argv[1], int(argv[2]), items, normalize=argv[4],
                    cardinality_only=argv[5] == "1")
            print(json.dumps(r))
            return 0
        if len(argv) == 6 and argv[0] == "dealer":
            low, high, bins, max_abs = float(argv[2]), float(argv[3]), int(argv[4]), float(argv[5])
            dealer(argv[1], low=low, high=high, bins=bins, max_abs=max_abs)
            return 0
        if len(argv) == 8 and argv[0] == "party":
            values = np.load(argv[3], allow_pickle=False)
            low, high, bins, max_abs = float(argv[4]), float(argv[5]), int(argv[6]), float(argv[7])
            r = party_stats(argv[1], int(argv[2]), values, low=low, high=high, bins=bins,
                            max_abs=max_abs)
            print(json.dumps(r))
            return 0
    except MpcError as e:
        print(f"veil.mpc: {e}", file=sys.stderr)
        return 1
    print(_main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
