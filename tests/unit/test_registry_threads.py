"""The registry under the service's threads: concurrent first reads of a catalog never see an
entry as unknown while another thread loads it."""

from __future__ import annotations

import threading
import time

from flopcast.registry import Registry


def test_concurrent_first_gets_all_succeed():
    """16 threads get the same 50 lazily loaded entries at once: every get returns the entry, and
    each loader runs exactly once."""
    reg: Registry[int] = Registry("thing")
    calls: dict[str, int] = {}
    gate = threading.Barrier(16)

    def loader(name: str) -> int:
        calls[name] = calls.get(name, 0) + 1
        time.sleep(0.001)   # a catalog file being read: the window the old registry raced in
        return len(name)

    for i in range(50):
        reg.register(f"n{i}", loader=lambda n=f"n{i}": loader(n))
    errors: list[BaseException] = []

    def worker() -> None:
        gate.wait()
        try:
            for i in range(50):
                assert reg.get(f"n{i}") == len(f"n{i}")
        except BaseException as e:   # collected for the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and set(calls.values()) == {1}
