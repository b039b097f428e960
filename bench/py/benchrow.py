"""The ROW output protocol of bench/run.py, for the Python side of each benchmark."""
import sys
import time

now = time.perf_counter


def row(workload, impl, value, unit, better):
    print(f"ROW\t{workload}\t{impl}\t{value:.6g}\t{unit}\t{better}", flush=True)
    sys.stdout.flush()
