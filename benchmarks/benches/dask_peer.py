"""dask.distributed on a loopback LocalCluster (2 worker processes, 1 thread each), the peer of
benches/cluster.rs: tiny-task throughput (client.map + gather), a 100 MiB round trip, and the
time from a crashed task (os.abort in the worker) to the next result. Medians of RUNS runs.

    pip install distributed
    python3 benchmarks/benches/dask_peer.py [TASKS=20000] [RUNS=5]
"""

import os
import statistics
import sys
import time


def tiny(n):
    return (n * 2654435761) & 0xFFFFFFFFFFFFFFFF


def echo(b):
    return b


def crash():
    os.abort()


def main():
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)

    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None)
    client = Client(cluster)
    client.submit(tiny, 0).result()
    rates, mibs, crashes = [], [], []
    payload = b"\x07" * (100 << 20)
    for run in range(runs):
        start = time.perf_counter()
        futures = client.map(tiny, range(run * tasks, (run + 1) * tasks), pure=False)
        assert len(client.gather(futures)) == tasks
        rates.append(tasks / (time.perf_counter() - start))
        del futures  # or the crash below makes dask recompute what the dead worker held
        start = time.perf_counter()
        assert len(client.submit(echo, payload, pure=False).result()) == len(payload)
        mibs.append(100 / (time.perf_counter() - start))
        try:
            client.submit(crash, pure=False).result(timeout=60)
        except Exception:
            pass
        start = time.perf_counter()
        client.submit(tiny, run, pure=False).result(timeout=60)
        crashes.append(time.perf_counter() - start)
    print(f"dask.distributed  tiny tasks/s {statistics.median(rates):,.0f}  "
          f"100 MiB round trip {statistics.median(mibs):.0f} MiB/s  "
          f"crash -> next {statistics.median(crashes) * 1e3:.1f} ms")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
