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

"""Benchmark: the scheduler at cloud scale, against real placement on
PostgreSQL.

For each N (hosts of 1 card x 8 regions x 4 functions, VCPU, MEMORY_MB
and DISK_GB on each root, about half the regions partly used), placement
runs as the integration tests run it (tests/integration/placement/
pg_placement.py: a throwaway PostgreSQL, placement's WSGI app over HTTP in
a child process). Its tables are filled by multi-row SQL inserts, one per
table (bench_scheduler.insert_hosts), after placement has created its
schema and, through its API, the resource class and the custom traits, so
that its own ids and caches stay right.

Per request, for three flavors (1 function; 2 functions of one region; two
whole regions, group_policy=isolate), printed (never asserted):

- nova's own allocation-candidates call, made by nova's
  SchedulerReportClient with nova's own query (ResourceRequest, limit
  ``[scheduler] max_placement_results`` = 1000, root_required as nova 34's
  request filters set it when every compute reports OWNER_NOVA), wall time;
- how many distinct hosts that answer gives the filters;
- our added placement time: none (the filter reads the summaries of that
  answer); beside it, what the filter's former usage call costs (1
  function only; it is still the fallback);
- the filter and weigher pass through nova's handlers on those hosts,
  stock (nova's filters and all_weighers) and ours, CPU time;
- the added time (ours - stock) against stock nova's total (its call and
  its pass).

Then 8 requests at once (1 function) in native threads, each nova's call
and the pass, stock and ours: requests per second. The placement served
here is one process serving one request at a time (wsgiref, as the
integration tests run it), so concurrent requests queue there alike for
stock and ours.

With ``--settings``, instead: which hosts and candidates reach the filter
under placement's and nova's settings (SETTINGS: placement's generation
strategy and ``max_allocation_candidates``, nova's
``max_placement_results``), on a packed cloud where good fits are rare
(packed_hosts), placement restarted with each setting on the same
database. Per flavor, ``--requests`` requests in a row, each nova's call,
our pass and nova's claim of the chosen candidate: nova's call, the
candidates and distinct hosts it gave of those that could take the
request, our pass (CPU), and how often the cloud's best candidate (by the
filter's own score, from the cloud's state) reached the filter and was
picked, and how often a fresh region was opened while a partly used one
fitted somewhere.

Run: ``python -m tests.bench.bench_scale [--hosts 500 2000 10000]
[--repeat 3] [--json out.json] [--plot out.png]`` (root, or PostgreSQL
installed), or ``tox -e bench-scale`` for N = 500, 2,000 and 10,000;
``python -m tests.bench.bench_scale --hosts 500 2000 10000 --settings
[SETTING ...] [--requests 4]`` for the settings.
"""

from __future__ import annotations

import os

# Nova 2026.2's scheduler runs in native threads; nova's test package
# patches threading with eventlet unless told not to before nova loads.
os.environ.setdefault("OS_NOVA_DISABLE_EVENTLET_PATCHING", "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import dataclasses  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

# bench_scheduler loads nova's unit test package, which sets up eventlet's
# patching: it must be the first of nova's modules to load.
from tests.bench import bench_scheduler as sched  # noqa: E402
from tests.integration.placement import pg_placement  # noqa: E402
import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402
from nova import objects  # noqa: E402
from nova.scheduler import filters as nova_filters  # noqa: E402
from nova.scheduler import utils as scheduler_utils  # noqa: E402
from nova.scheduler import weights as nova_weights  # noqa: E402
from nova.scheduler.client import report  # noqa: E402

from nova_accel_weigher import filters, packing, usage, weighers  # noqa: E402

CONF = nova.conf.CONF

RC = sched.RC
SIZE = sched.FUNCTIONS
FLAVORS = {
    "1 function": {f"resources1:{RC}": "1"},
    "2 functions": {f"resources1:{RC}": "2"},
    "2 whole regions": {
        "group_policy": "isolate",
        f"resources1:{RC}": str(SIZE), f"resources2:{RC}": str(SIZE),
        f"trait1:CUSTOM_ACCEL_REGION_SIZE_{SIZE}": "required",
        f"trait2:CUSTOM_ACCEL_REGION_SIZE_{SIZE}": "required"},
}
CONCURRENT = 8


def flavor_spec(extra_specs) -> objects.RequestSpec:
    spec = sched.request_spec()
    spec.flavor.extra_specs = dict(extra_specs)
    # What nova 34's request filters add before asking placement
    # (owner_nova_filter, compute_status_filter).
    spec.root_required.add("OWNER_NOVA")
    spec.root_forbidden.add("COMPUTE_STATUS_DISABLED")
    return spec


class Cloud:
    """Hosts in placement on PostgreSQL, and nova's client to it."""

    def __init__(self, endpoint: str, hosts: list[sched.Host]):
        from keystoneauth1 import adapter, session, token_endpoint

        self.hosts = hosts
        self.by_root = {h.root: h for h in self.hosts}
        self.adapter = adapter.Adapter(session.Session(
            auth=token_endpoint.Token(endpoint, "admin")),
            service_type="placement")
        self.client = report.SchedulerReportClient(adapter=self.adapter)
        self.ctx = nova_context.get_admin_context()

    def load(self, db_url: str) -> float:
        """Fill placement's tables with the hosts; seconds taken."""
        import sqlalchemy as sa

        start = time.perf_counter()
        for path in (f"/resource_classes/{RC}",
                     *(f"/traits/{t}" for t in sched.REGION_TRAITS)):
            response = self.adapter.put(path, microversion="1.7",
                                        raise_exc=False)
            if response.status_code not in (201, 204):
                raise SystemExit(f"placement refused {path}: "
                                 f"{response.text}")
        engine = sa.create_engine(db_url)
        with engine.begin() as conn:
            sched.insert_hosts(conn, self.hosts)
            # Ids were given explicitly: move the sequences past them.
            for table in ("resource_providers", "projects", "users"):
                conn.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"))
        # Planner statistics, as a database in service has them: without,
        # PostgreSQL may plan placement's queries for empty tables until
        # autovacuum happens by (minutes of one query at 10,000 hosts).
        with engine.connect().execution_options(
                isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
        engine.dispose()
        return time.perf_counter() - start

    def nova_call(self, spec):
        """nova's own call: (seconds, candidates, summaries)."""
        resources = scheduler_utils.ResourceRequest.from_request_spec(spec)
        start = time.perf_counter()
        answer = self.client.get_allocation_candidates(self.ctx, resources)
        seconds = time.perf_counter() - start
        if not answer or answer[0] is None:
            raise SystemExit("placement gave nova no candidates")
        return seconds, answer[0], answer[1]

    def claim(self, candidate) -> str:
        """Claim ``candidate`` as nova's scheduler does; its consumer."""
        consumer = str(uuid.uuid4())
        if not self.client.claim_resources(
                self.ctx, consumer, candidate, "bench", "bench",
                report.SAME_SUBTREE_VERSION):
            raise SystemExit("placement refused the claim of a candidate "
                             "it offered")
        return consumer

    def unclaim(self, consumer: str) -> None:
        response = self.adapter.delete(f"/allocations/{consumer}",
                                       raise_exc=False)
        if response.status_code != 204:
            raise SystemExit(f"placement kept {consumer}: {response.text}")

    def host_states(self, candidates, summaries):
        """Nova's host states for an answer: one per compute node the
        summaries name, with its candidates (as SchedulerManager builds
        them: alloc_reqs_by_rp_uuid, keyed by each provider)."""
        by_rp = collections.defaultdict(list)
        for candidate in candidates:
            for rp in candidate["allocations"]:
                by_rp[rp].append(candidate)
        hosts = [self.by_root[rp] for rp in summaries if rp in self.by_root]
        return sched.host_states(hosts, by_rp)


class Passes:
    """Stock nova's filters and weighers, and stock plus ours."""

    def __init__(self):
        handler = nova_filters.HostFilterHandler()
        by_name = {cls.__name__: cls for cls in handler.get_all_classes()}
        self.stock = ([by_name[n]() for n in sched.STOCK_FILTERS],
                      [cls() for cls in nova_weights.all_weighers()])
        self.ours = ([*self.stock[0], filters.AccelTopologyFilter()],
                     [*self.stock[1], weighers.AccelPackingWeigher()])

    def weighed(self, which, states, spec, summaries):
        """CPU seconds of one pass and nova's weighed hosts, best first
        (see bench_scheduler.weighed_pass); ours gets the summaries as
        nova's scheduler hands them over."""
        if which == "ours":
            usage.carry(spec, summaries)
        filter_objs, weigher_objs = getattr(self, which)
        return sched.weighed_pass(filter_objs, weigher_objs, states, spec)

    def run(self, which, states, spec, summaries) -> float:
        """CPU seconds of one pass."""
        return self.weighed(which, states, spec, summaries)[0]


def median_ms(values) -> float:
    return statistics.median(values) * 1000


def per_request(cloud: Cloud, passes: Passes, name: str, extra_specs,
                repeat: int) -> dict:
    calls, stock, ours, hosts = [], [], [], set()
    for _ in range(repeat):
        seconds, candidates, summaries = cloud.nova_call(
            flavor_spec(extra_specs))
        calls.append(seconds)
        for which, into in (("stock", stock), ("ours", ours)):
            states = cloud.host_states(candidates, summaries)
            hosts.add(len(states))
            into.append(passes.run(which, states, flavor_spec(extra_specs),
                                   summaries))
    row = {"flavor": name, "hosts_seen": sorted(hosts),
           "candidates": len(candidates),
           "nova_call_ms": median_ms(calls), "stock_pass_ms": median_ms(stock),
           "ours_pass_ms": median_ms(ours), "added_placement_ms": 0.0}
    row["added_ms"] = row["ours_pass_ms"] - row["stock_pass_ms"]
    row["stock_total_ms"] = row["nova_call_ms"] + row["stock_pass_ms"]
    row["added_share"] = row["added_ms"] / row["stock_total_ms"]
    return row


def former_usage_call(cloud: Cloud, repeat: int) -> float:
    """The filter's fallback (its only way before): every region of the
    cloud, no limit. Wall ms, median."""
    source = usage.PlacementUsage(lambda: cloud.adapter, timeout=600.0)
    seconds = []
    for i in range(repeat):
        start = time.perf_counter()
        if source(f"r{i}", [RC]) is None:
            raise SystemExit("the usage call failed (logged above)")
        seconds.append(time.perf_counter() - start)
    return median_ms(seconds)


def concurrent(cloud: Cloud, passes: Passes, which: str) -> float:
    """Requests per second of CONCURRENT requests at once, each nova's
    call and the pass, in native threads."""
    extra_specs = FLAVORS["1 function"]
    errors = []

    def one():
        try:
            spec = flavor_spec(extra_specs)
            _, candidates, summaries = cloud.nova_call(spec)
            passes.run(which, cloud.host_states(candidates, summaries),
                       spec, summaries)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(CONCURRENT)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"a concurrent request failed: {errors[0]!r}")
    return CONCURRENT / wall


def measure(n: int, repeat: int) -> dict:
    passes = Passes()
    with pg_placement.postgres() as db_url, \
            pg_placement.placement_server(db_url) as endpoint:
        cloud = Cloud(endpoint, [sched.Host(i) for i in range(n)])
        load_seconds = cloud.load(db_url)
        print(f"\n{n} hosts ({n * sched.REGIONS} regions): tables filled "
              f"in {load_seconds:.1f} s", flush=True)
        rows = []
        for name, extra_specs in FLAVORS.items():
            row = per_request(cloud, passes, name, extra_specs, repeat)
            rows.append(row)
            print(f"  {name:16} nova's call {row['nova_call_ms']:8.0f} ms"
                  f" ({row['candidates']} candidates from "
                  f"{'/'.join(map(str, row['hosts_seen']))} hosts); pass: "
                  f"stock {row['stock_pass_ms']:6.1f} ms, ours "
                  f"{row['ours_pass_ms']:6.1f} ms; added "
                  f"{row['added_ms']:6.1f} ms = "
                  f"{row['added_share']:.1%} of stock's "
                  f"{row['stock_total_ms']:.0f} ms", flush=True)
        former = former_usage_call(cloud, 1 if n >= 2000 else repeat)
        print(f"  the filter's former usage call (every region, its "
              f"fallback): {former:.0f} ms", flush=True)
        rates = {}
        for which in ("stock", "ours", "stock", "ours"):
            rates.setdefault(which, []).append(
                concurrent(cloud, passes, which))
        rates = {k: statistics.median(v) for k, v in rates.items()}
        print(f"  {CONCURRENT} requests at once (1 function, native "
              f"threads): stock {rates['stock']:.2f} req/s, ours "
              f"{rates['ours']:.2f} req/s", flush=True)
    return {"hosts": n, "load_seconds": load_seconds, "rows": rows,
            "former_usage_call_ms": former, "concurrent_req_s": rates}


# -- which settings let every host be seen ----------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    """How many candidates nova gets, and from which hosts: placement.conf's
    [placement] allocation_candidates_generation_strategy and
    max_allocation_candidates (placement stops generating there), nova.conf's
    [scheduler] max_placement_results (the query's limit, applied to what
    placement generated)."""

    name: str
    strategy: str
    max_candidates: int
    limit: int
    # Both numbers are the cloud's regions instead: every candidate of a
    # request for one region, from every host.
    per_region: bool = False

    def sized(self, hosts: int) -> Setting:
        if not self.per_region:
            return self
        regions = hosts * sched.REGIONS
        return dataclasses.replace(self, max_candidates=regions,
                                   limit=regions, per_region=False)

    def placement_options(self) -> dict:
        return {"placement": {
            "allocation_candidates_generation_strategy": self.strategy,
            "max_allocation_candidates": self.max_candidates}}


SETTINGS = {s.name: s for s in (
    Setting("defaults", "depth-first", -1, 1000),
    Setting("breadth-1000", "breadth-first", 1000, 1000),
    Setting("breadth-10000", "breadth-first", 10000, 10000),
    Setting("breadth-regions", "breadth-first", 0, 0, per_region=True),
)}
# Per flavor: functions asked of each region, and how many regions
# (group_policy=isolate: distinct ones).
SHAPES = {"1 function": (1, 1), "2 functions": (2, 1),
          "2 whole regions": (SIZE, 2)}
# Hosts whose card breaks the packed pattern, as many whatever the cloud's
# size (see packed_hosts).
ODD_HOSTS = 16


def packed_hosts(n: int) -> list[sched.Host]:
    """A cloud the weigher has kept packed: host i has i % 6 full regions
    and the others empty, except ODD_HOSTS hosts spread over the cloud, a
    quarter each with one region of 3, 2 or 1 functions used after its
    full ones (the holes departures leave, which the weigher fills first)
    and a quarter with 6 full regions (the fullest cards where two whole
    regions still fit). Their number does not grow with the cloud: holes
    come from churn, not from the number of hosts. In the state the other
    measurements use (half the regions partly used on every host) any
    sample of the cloud holds a best fit, so which hosts are seen cannot
    matter there."""
    odd = {(k * n) // ODD_HOSTS: k % 4 for k in range(min(n, ODD_HOSTS))}
    hosts = []
    for i in range(n):
        host = sched.Host(i)
        kind = odd.get(i)
        full = 6 if kind == 3 else i % 6
        host.used = [SIZE] * full + [0] * (sched.REGIONS - full)
        if kind is not None and kind < 3:
            host.used[full] = SIZE - 1 - kind
        hosts.append(host)
    return hosts


class Packing:
    """The best any host of the whole cloud offers a flavor, from the
    cloud's state as written to placement and claimed since, scored by the
    filter's own function and options: what a pick is measured against."""

    def __init__(self, hosts: list[sched.Host], shape: tuple[int, int]):
        opts = CONF.accel_packing
        self.policy = opts.policy
        self.mix = packing.parse_mix(opts.request_mix)
        self.shape = shape
        self.by_root = {h.root: h for h in hosts}
        self.region_of = {rp: (h, r) for h in hosts
                          for r, rp in enumerate(h.regions)}
        # Per host: (best score, fewest fresh regions) of its candidates;
        # None where the flavor does not fit.
        self.offers = {h.root: self._offer(h) for h in hosts}

    def score(self, demand: dict[str, int], host: sched.Host):
        return packing.score(demand, host.usage(), policy=self.policy,
                             mix=self.mix)

    @staticmethod
    def fresh(demand: dict[str, int], host: sched.Host) -> int:
        return sum(1 for rp in demand
                   if host.used[host.regions.index(rp)] == 0)

    def _offer(self, host: sched.Host):
        functions, count = self.shape
        fits = [rp for rp, used in zip(host.regions, host.used, strict=True)
                if SIZE - used >= functions]
        demands = [dict.fromkeys(regions, functions)
                   for regions in itertools.combinations(fits, count)]
        if not demands:
            return None
        return (max(self.score(d, host) for d in demands),
                min(self.fresh(d, host) for d in demands))

    def eligible(self) -> int:
        return sum(1 for offer in self.offers.values() if offer)

    def best(self):
        """The best score of the cloud, and the fewest fresh regions a
        candidate of the cloud opens."""
        offers = [o for o in self.offers.values() if o]
        return max(o[0] for o in offers), min(o[1] for o in offers)

    def judge(self, candidate) -> tuple[packing.Score, int]:
        """``candidate``'s score, and the fresh regions it opens."""
        demand = packing.region_demand(candidate, [RC])
        host = self.region_of[next(iter(demand))][0]
        return self.score(demand, host), self.fresh(demand, host)

    def claimed(self, candidate) -> sched.Host:
        """Record a claim of ``candidate``; its host."""
        for rp, amount in packing.region_demand(candidate, [RC]).items():
            host, r = self.region_of[rp]
            host.used[r] += amount
        self.offers[host.root] = self._offer(host)
        return host


def packing_run(cloud: Cloud, passes: Passes, name: str, requests: int
                ) -> dict:
    """``requests`` requests of one flavor in a row, each nova's call, our
    pass and nova's claim of the chosen host's first candidate (as the
    scheduler claims it), so that each sees the claims before it; then the
    claims are deleted and the cloud is as it was."""
    judge = Packing(cloud.hosts, SHAPES[name])
    before = {h.root: list(h.used) for h in cloud.hosts}
    calls, passes_cpu, counts, reached, eligible = [], [], [], [], []
    best_seen = best_picked = needless_fresh = 0
    consumers = []
    try:
        for _ in range(requests):
            spec = flavor_spec(FLAVORS[name])
            seconds, candidates, summaries = cloud.nova_call(spec)
            states = cloud.host_states(candidates, summaries)
            cpu, weighed = passes.weighed("ours", states, spec, summaries)
            best, fewest_fresh = judge.best()
            # The filter leaves each host's best score on its state.
            seen = max(score for _, score in (
                getattr(w.obj, filters.SCORE_ATTR) for w in weighed)
                if score is not None)
            chosen = weighed[0].obj.allocation_candidates[0]
            score, fresh = judge.judge(chosen)
            best_seen += seen >= best
            best_picked += score >= best
            needless_fresh += fresh > fewest_fresh
            eligible.append(judge.eligible())
            consumers.append(cloud.claim(chosen))
            judge.claimed(chosen)
            calls.append(seconds)
            passes_cpu.append(cpu)
            counts.append(len(candidates))
            reached.append(len(states))
    finally:
        for consumer in consumers:
            cloud.unclaim(consumer)
        for host in cloud.hosts:
            host.used = before[host.root]
    return {"flavor": name, "requests": requests,
            "nova_call_ms": median_ms(calls), "pass_ms": median_ms(passes_cpu),
            "candidates": int(statistics.median(counts)),
            "hosts_reached": int(statistics.median(reached)),
            "eligible_hosts": int(statistics.median(eligible)),
            "best_seen": best_seen, "best_picked": best_picked,
            "needless_fresh": needless_fresh}


def measure_settings(n: int, requests: int, settings) -> dict:
    """Every setting on one packed cloud of ``n`` hosts, placement restarted
    with each (the database stays), in the same run."""
    # Picks are judged by the region score (Packing), so the filter runs
    # the region policy too: which hosts and candidates placement hands
    # nova, what the settings change, does not depend on the policy.
    CONF.set_override("policy", packing.POLICY_FRAGMENTATION,
                      group="accel_packing")
    passes = Passes()
    results = []
    start = time.perf_counter()
    with pg_placement.postgres() as db_url:
        hosts = packed_hosts(n)
        for i, setting in enumerate(settings):
            setting = setting.sized(n)
            CONF.set_override("max_placement_results", setting.limit,
                              group="scheduler")
            with pg_placement.placement_server(
                    db_url, options=setting.placement_options()) as endpoint:
                cloud = Cloud(endpoint, hosts)
                if i == 0:
                    print(f"\n{n} hosts, packed (tables filled in "
                          f"{cloud.load(db_url):.1f} s)", flush=True)
                # A first call warms placement's caches, outside the count.
                cloud.nova_call(flavor_spec(FLAVORS["1 function"]))
                print(f"  {setting.name} (strategy {setting.strategy}, "
                      f"max_allocation_candidates {setting.max_candidates},"
                      f" max_placement_results {setting.limit})", flush=True)
                for name in FLAVORS:
                    row = packing_run(cloud, passes, name, requests)
                    row.update(setting=setting.name,
                               strategy=setting.strategy,
                               max_allocation_candidates=(
                                   setting.max_candidates),
                               max_placement_results=setting.limit)
                    results.append(row)
                    print(f"    {name:16} nova's call "
                          f"{row['nova_call_ms']:7.0f} ms, "
                          f"{row['candidates']:6} candidates from "
                          f"{row['hosts_reached']:5} of "
                          f"{row['eligible_hosts']} hosts; our pass "
                          f"{row['pass_ms']:6.1f} ms; the cloud's best "
                          f"seen {row['best_seen']}/{requests}, picked "
                          f"{row['best_picked']}/{requests}; a fresh region"
                          f" opened needlessly {row['needless_fresh']}/"
                          f"{requests}", flush=True)
        CONF.clear_override("max_placement_results", group="scheduler")
    seconds = time.perf_counter() - start
    print(f"  ({n} hosts: {seconds / 60:.1f} min)", flush=True)
    return {"hosts": n, "seconds": seconds, "rows": results}


def plot(results: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    ns = [r["hosts"] for r in results]
    fig, ax = pyplot.subplots(figsize=(7, 4.5))
    for i, name in enumerate(FLAVORS):
        ax.plot(ns, [r["rows"][i]["added_ms"] for r in results], "o-",
                label=f"added by us, {name}")
        ax.plot(ns, [r["rows"][i]["stock_total_ms"] for r in results], "x:",
                label=f"stock nova's total, {name}")
    ax.plot(ns, [r["former_usage_call_ms"] for r in results], "s--",
            label="the former usage call (now only the fallback)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("hosts (1 card x 8 regions x 4 functions each)")
    ax.set_ylabel("ms per request")
    ax.set_title("Time per scheduling request: added by nova-accel vs "
                 "stock nova")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 500 alone by default, as tox -e bench runs every benchmark with no
    # arguments; tox -e bench-scale asks for the three sizes.
    parser.add_argument("--hosts", type=int, nargs="+", default=[500])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--plot", help="draw added time against N (PNG)")
    parser.add_argument(
        "--settings", nargs="*", choices=list(SETTINGS), metavar="SETTING",
        help="instead: compare placement's and nova's candidate settings "
             f"on a packed cloud (all, or some of {', '.join(SETTINGS)})")
    parser.add_argument("--requests", type=int, default=6,
                        help="requests in a row per flavor and setting, "
                             "each claimed (with --settings)")
    args = parser.parse_args(argv)
    if min(args.hosts) < 1 or args.repeat < 1 or args.requests < 1:
        parser.error("--hosts, --repeat and --requests must be at least 1")
    if args.settings is not None and args.plot:
        parser.error("--plot draws the main measurement, not --settings")
    for path in (args.json, args.plot):
        if path and not os.path.isdir(os.path.dirname(path) or "."):
            parser.error(f"no such directory for {path}")
    if args.settings is not None:
        chosen = [SETTINGS[name] for name in args.settings or SETTINGS]
        results = [measure_settings(n, args.requests, chosen)
                   for n in args.hosts]
    else:
        results = [measure(n, args.repeat) for n in args.hosts]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
