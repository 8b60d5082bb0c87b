"""Benchmark: accel-sim at scale, with and without the host index.

Prints (never asserts) the wall time of each policy on 10,000 hosts of one
card of 8 regions x 4 functions, replaying 200,000 Poisson requests (what
``accel-sim --cluster homogeneous:10000:8x4 --workload poisson:200000``
runs), with the resulting table; the same at 700 arrivals a second,
which loads the cluster to about half; then, on a cluster small enough for the
full scan, the time of the same run with the host index and with a look
at every host for every request, and whether both gave the same result.

Run: ``python tests/bench/bench_sim.py [--hosts N] [--requests N]
[--rates 1,700] [--policies a,b]``.
"""

import argparse
import sys
import time

from nova_accel_weigher import sim


def timed(cluster, requests, policy, *, indexed):
    start = time.perf_counter()
    result = sim.simulate(cluster, requests, policy, "replay", 1.3, 1,
                          indexed=indexed)
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rates", default="1,700",
                        help="arrivals a second, one run each")
    parser.add_argument("--policies", default=",".join(sim.POLICIES))
    args = parser.parse_args(argv)
    policies = args.policies.split(",")

    cluster = f"homogeneous:{args.hosts}:8x4"
    for rate in args.rates.split(","):
        workload = f"poisson:{args.requests}" + (
            f":{rate}" if rate != "1" else "")
        requests = sim.build_workload(workload, 1, 4)
        print(f"accel-sim --cluster {cluster} --workload {workload} "
              f"--policies {','.join(policies)}")
        results, total = {}, 0.0
        for policy in policies:
            results[policy], spent = timed(cluster, requests, policy,
                                           indexed=True)
            total += spent
            print(f"  {policy:<16} {spent:7.1f} s", flush=True)
        print(f"  {'all':<16} {total:7.1f} s")
        print(sim._table(results) + "\n")

    small, small_workload = "homogeneous:100:8x4", "poisson:3000:5"
    small_requests = sim.build_workload(small_workload, 1, 4)
    print(f"--cluster {small} --workload {small_workload}: host index "
          f"against a look at every host")
    for policy in ("best-fit", "fragmentation"):
        indexed, with_index = timed(small, small_requests, policy,
                                    indexed=True)
        scanned, with_scan = timed(small, small_requests, policy,
                                   indexed=False)
        same = (indexed.metrics == scanned.metrics
                and indexed.timeline == scanned.timeline)
        print(f"  {policy:<16} index {with_index:6.2f} s, scan "
              f"{with_scan:6.2f} s ({with_scan / with_index:.0f}x), "
              f"same result: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
