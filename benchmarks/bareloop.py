"""The bare loop as a process a user would write: ``python -m benchmarks.bareloop API_URL PROFILES THREADS``.

Reads the profiles file (one name a line), checks every name with ``THREADS`` threads sharing one
``httpx.Client`` (GET + ``json()`` of a 200), prints how many were checked and exits. No
database, no proxies, no retry, no log: the floor for a whole ``storycheck run`` of the same
file, start-up included.
"""

from __future__ import annotations

import itertools
import sys
import threading

import httpx


def main(api_url: str, profiles: str, threads: int) -> int:
    with open(profiles, encoding="utf-8") as fh:
        names = [ln.strip() for ln in fh if ln.strip()]
    template = api_url + "/v1/stories?username={}"
    client = httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=threads,
                                                              max_keepalive_connections=threads))
    counter = itertools.count()  # next() is atomic under the GIL
    checked = [0] * threads

    def work(slot: int) -> None:
        for i in iter(counter.__next__, None):
            if i >= len(names):
                return
            r = client.get(template.format(names[i]))
            if r.status_code == 200:
                r.json()
            checked[slot] += r.status_code in (200, 403, 404)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    client.close()
    print(f"checked {sum(checked)} of {len(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
