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

"""Benchmark: the defragmentation planner at cloud scale.

Prints (never asserts) the wall time of ``planner.plan`` on a cloud of
``--hosts`` hosts of ``--regions`` regions of 4 functions (1,000 x 8 =
8,000 regions by default), filled to about 55% by servers of 1 to 3
functions, a tenth of them holding functions of two regions: for each
``--free`` count, and within ``--max-moves``; with the moves the plan
needs, the moves the obvious greedy (fewest holders first) would need,
and the whole regions before and after.

Run: ``python -m tests.bench.bench_defrag [--hosts N] [--regions N]
[--free 10,100,1000] [--max-moves 50] [--seed 1]``.
"""

import argparse
import time

from accel_defrag import planner
from tests.common.defrag_builders import RC, greedy_moves, random_cloud


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--regions", type=int, default=8)
    parser.add_argument("--free", default="10,100,1000")
    parser.add_argument("--max-moves", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    cloud = random_cloud(args.hosts, args.regions, args.seed)
    built = time.perf_counter() - start
    print(f"cloud: {len(cloud.hosts)} hosts, {len(cloud.regions)} regions, "
          f"{len(cloud.servers)} servers (built in {built:.2f} s)")
    print(f"{'target':>22} {'plan s':>8} {'moves':>6} {'greedy':>7} "
          f"{'freed':>6} {'whole before':>13} {'after':>6} {'exact':>6}")
    targets = [planner.Target(RC, 4, int(n)) for n in args.free.split(",")]
    targets.append(planner.Target(RC, 4, len(cloud.regions),
                                  max_moves=args.max_moves))
    for target in targets:
        start = time.perf_counter()
        plan = planner.plan(cloud, target)
        seconds = time.perf_counter() - start
        label = (f"free {target.count}" if target.max_moves is None
                 else f"most in {target.max_moves} moves")
        greedy = (greedy_moves(cloud, RC, 4, len(plan.freed))
                  if plan.freed else 0)
        print(f"{label:>22} {seconds:8.2f} {len(plan.moves):6d} "
              f"{greedy:7d} {len(plan.freed):6d} {plan.before[0]:13d} "
              f"{plan.after[0]:6d} {str(plan.exact):>6}")


if __name__ == "__main__":
    main()
