# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Benchmark: accel-sim at scale, with and without the host index.

Prints (never asserts) the wall time of each policy on 10,000 hosts of one
card of 8 regions x 4 functions, replaying 200,000 Poisson requests (what
``accel-sim --cluster homogeneous:10000:8x4 --workload poisson:200000``
runs), with the resulting table; the same at 700 arrivals a second,
which loads the cluster to about half; then, on a cluster small enough for the
full scan, the time of the same run with the host index and with a look
at every host for every request, and whether both gave the same result.

Run: ``python -m tests.bench.bench_sim [--hosts N] [--requests N]
[--rates 1,700] [--policies a,b]``. The default policies are those the
host index serves; the scanned ones (``stock-nova``, ``fgd``,
``paper-best-fit``) look at every host for every request, hours here.

``--openb DIR`` instead fills the openb node list in ``DIR`` with each
pod list named by ``--traces`` to 130% (the FGD paper's experiment), for
seeds 1 to ``--seeds``, and prints per trace and policy the mean share of
GPU capacity allocated and its range over the seeds; ``--bound`` adds an
upper bound no policy can pass on the same requests (see ``lp_bound``;
needs scipy).
"""

import argparse
import collections
import statistics
import sys
import time

from nova_accel_weigher import sim

OPENB_POLICIES = ("random", "paper-best-fit", "fgd", "stock-nova",
                  "placement-order", "best-fit", "fragmentation",
                  "host-fragmentation")


def timed(cluster, requests, policy, *, indexed):
    start = time.perf_counter()
    result = sim.simulate(cluster, requests, policy, "replay", 1.3, 1,
                          indexed=indexed)
    return result, time.perf_counter() - start


def lp_bound(cluster, requests):
    """The most GPU capacity any policy could allocate to ``requests`` (a
    fill run's arrivals), as a share of capacity: a linear relaxation that
    lets tasks be split and pools each class of identical nodes (GPU
    model, CPU, memory, GPU count) into one bin of their summed CPU,
    memory and GPU, while keeping which tasks may run there (GPU model,
    GPU count, a node's CPU and memory). Any placement is a solution of
    it, so its optimum bounds every policy; it ignores the arrival order
    and the integrality of tasks and GPUs, which is where the bound is
    loose."""
    import numpy
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    hosts = sim.build_cluster(cluster)
    capacity = sum(r.capacity for h in hosts for r in h.regions)
    classes = collections.Counter(
        (h.model, h.cpu, h.memory, len(h.regions), h.regions[0].capacity)
        for h in hosts)
    types = collections.Counter(
        (r.cpu, r.memory, r.asked, r.whole_regions or 1, r.gpu_spec)
        for r in requests if r.functions)
    type_list, class_list = list(types), list(classes)
    pairs = [(t, c) for t, (cpu, mem, _, gpus, spec) in enumerate(type_list)
             for c, (model, ccpu, cmem, cgpus, _) in enumerate(class_list)
             if (not spec or model in spec) and gpus <= cgpus
             and cpu <= ccpu and mem <= cmem]
    rows, cols, values = [], [], []
    for k, (t, c) in enumerate(pairs):
        cpu, mem, asked, _, _ = type_list[t]
        base = len(type_list) + 3 * c
        for row, value in ((t, 1), (base, cpu), (base + 1, mem),
                           (base + 2, asked)):
            rows.append(row)
            cols.append(k)
            values.append(value)
    limits = [types[t] for t in type_list]
    for cls in class_list:
        count = classes[cls]
        limits += [count * cls[1], count * cls[2], count * cls[3] * cls[4]]
    gain = numpy.array([type_list[t][2] for t, _ in pairs], float)
    answer = linprog(-gain, A_ub=coo_matrix((values, (rows, cols)),
                                            shape=(len(limits), len(pairs))),
                     b_ub=numpy.array(limits, float), bounds=(0, None),
                     method="highs")
    return -answer.fun / capacity


def openb_family(args):
    nodes = f"{args.openb}/openb_node_list_gpu_node.csv"
    cluster = f"{'openb-milli' if args.milli else 'openb'}:{nodes}"
    size = sim.MILLI_PER_GPU if args.milli else sim.DEFAULT_FUNCTIONS_PER_GPU
    policies = args.policies.split(",") if args.policies else OPENB_POLICIES
    print(f"{cluster}, fill to 130%, seeds 1-{args.seeds}: mean share of "
          f"GPU capacity allocated (min-max over the seeds)")
    for trace in args.traces.split(","):
        workload = f"openb:{args.openb}/openb_pod_list_{trace}.csv"
        shares = collections.defaultdict(list)
        bounds = []
        for seed in range(1, args.seeds + 1):
            requests = sim.build_workload(workload, seed, size, timed=False)
            for policy in policies:
                shares[policy].append(sim.simulate(
                    cluster, requests, policy, "fill", 1.3,
                    seed).metrics["utilisation"])
            if args.bound:
                capacity = sum(r.capacity for h in sim.build_cluster(cluster)
                               for r in h.regions)
                bounds.append(lp_bound(cluster, sim.fill_order(
                    requests, 1.3 * capacity, seed)))
        cells = [f"{p} {100 * statistics.mean(v):.2f} "
                 f"({100 * min(v):.2f}-{100 * max(v):.2f})"
                 for p, v in shares.items()]
        if bounds:
            cells.append(f"bound {100 * min(bounds):.2f}")
        print(f"  {trace}: " + ", ".join(cells), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rates", default="1,700",
                        help="arrivals a second, one run each")
    parser.add_argument("--policies", help="comma-separated; default: "
                        "those the host index serves (--openb: all)")
    parser.add_argument("--openb", metavar="DIR",
                        help="the openb family experiment on the traces in "
                             "DIR instead")
    parser.add_argument("--traces", default="default",
                        help="--openb: pod lists, by the name after "
                             "openb_pod_list_")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--quarter", dest="milli", action="store_false",
                        help="--openb: a GPU as 4 functions (openb:), not "
                             "1000 milli-GPU (openb-milli:)")
    parser.add_argument("--bound", action="store_true",
                        help="--openb: the LP upper bound too (scipy)")
    args = parser.parse_args(argv)
    if args.openb:
        return openb_family(args)
    policies = (args.policies.split(",") if args.policies else
                [p for p in sim.POLICIES if p not in sim.SCANNED_POLICIES])

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
