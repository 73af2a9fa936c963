"""Yardstick for spawn_roundtrip: start -> result of a trivial process with Python's
multiprocessing, per start method (fork, forkserver, spawn), median of 40 each.
`python3 scripts/mp-spawn.py` prints one JSON line per method."""
import json
import multiprocessing as mp
import statistics
import time


def trivial(connection):
    connection.send(None)
    connection.close()


def roundtrip(context):
    receiving, sending = context.Pipe(duplex=False)
    start = time.perf_counter()
    process = context.Process(target=trivial, args=(sending,))
    process.start()
    receiving.recv()
    process.join()
    elapsed = time.perf_counter() - start
    receiving.close()
    sending.close()
    return elapsed * 1e3


if __name__ == "__main__":
    for method in ["fork", "forkserver", "spawn"]:
        context = mp.get_context(method)
        roundtrip(context)  # warm-up (starts the fork server)
        times = [roundtrip(context) for _ in range(40)]
        print(json.dumps({"bench": "spawn_roundtrip", "metric": f"multiprocessing_{method}_median",
                          "value": round(statistics.median(times), 3), "unit": "ms"}))
