"""``accel-sim``: replay accelerator requests on a simulated cloud.

Every policy that scores (``best-fit``, ``fragmentation``) goes through
``packing.rank`` and ``Score.value``, the very functions the filter and
the weigher call, so what the simulator shows is what the scheduler does.
The others model what nova does without us: ``placement-order`` takes the
first host and the first candidate in a fixed order (placement's order is
deterministic but arbitrary), ``random`` what
``randomize_allocation_candidates`` gives, ``spread`` the emptiest region.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from nova_accel_weigher import packing

SCORED_POLICIES = {"best-fit": packing.POLICY_BEST_FIT,
                   "fragmentation": packing.POLICY_FRAGMENTATION}
POLICIES = ("placement-order", "random", "spread", "best-fit",
            "fragmentation")
DEFAULT_FUNCTIONS_PER_GPU = 4


@dataclass
class Region:
    name: str
    card: str
    capacity: int
    used: int = 0

    @property
    def free(self) -> int:
        return self.capacity - self.used


@dataclass
class Host:
    name: str
    regions: list[Region]

    def usage(self) -> dict[str, packing.RegionUsage]:
        return {r.name: packing.RegionUsage(r.capacity, r.used, r.card)
                for r in self.regions}


@dataclass(frozen=True)
class Request:
    """``functions`` from one region, or ``whole_regions`` whole regions
    (then ``functions`` is the size of each)."""

    arrival: float
    duration: float
    functions: int
    whole_regions: int = 0


# -- clusters ---------------------------------------------------------------

def _host(name: str, cards: Sequence[tuple[int, int]]) -> Host:
    regions = [Region(f"{name}/c{c}/r{r}", f"{name}/c{c}", size)
               for c, (count, size) in enumerate(cards)
               for r in range(count)]
    return Host(name, regions)


def build_cluster(spec: str) -> list[Host]:
    kind, _, arg = spec.partition(":")
    if kind == "meeting":
        return [_host("host1", [(3, 4)])]
    if kind == "homogeneous":
        hosts, shape = arg.split(":")
        regions, functions = (int(x) for x in shape.lower().split("x"))
        return [_host(f"host{i}", [(regions, functions)])
                for i in range(int(hosts))]
    if kind == "mixed":
        shapes = [(1, 4), (2, 4), (3, 4), (4, 2)]
        return [_host(f"host{i}", [shapes[i % 4], shapes[(i + 1) % 4],
                                   (1, 1), (1, 8)])
                for i in range(int(arg))]
    if kind == "openb":
        with open(arg, newline="") as f:
            return [_host(row["sn"], [(1, DEFAULT_FUNCTIONS_PER_GPU)]
                          * int(row["gpu"]))
                    for row in csv.DictReader(f) if int(row["gpu"]) > 0]
    raise ValueError(f"unknown cluster {spec!r}")


# -- workloads --------------------------------------------------------------

def build_workload(spec: str, seed: int, region_size: int) -> list[Request]:
    kind, _, arg = spec.partition(":")
    if kind == "meeting":
        return [Request(0, math.inf, 1), Request(1, math.inf, 2),
                Request(2, math.inf, 1),
                Request(3, math.inf, region_size, whole_regions=2)]
    if kind == "poisson":
        rng = random.Random(seed)
        requests, now = [], 0.0
        for _ in range(int(arg)):
            now += rng.expovariate(1.0)
            shape = rng.choices([(1, 0), (2, 0), (3, 0), (region_size, 1)],
                                weights=[40, 25, 15, 20])[0]
            requests.append(Request(now, rng.expovariate(1 / 400.0),
                                    shape[0], shape[1]))
        return requests
    if kind == "csv":
        with open(arg, newline="") as f:
            return [Request(float(r["arrival"]), float(r["duration"]),
                            int(r["functions"]),
                            int(r.get("whole_region") or 0))
                    for r in csv.DictReader(f)]
    if kind == "openb":
        return _openb_pods(arg, region_size)
    raise ValueError(f"unknown workload {spec!r}")


def _openb_pods(path: str, region_size: int) -> list[Request]:
    milli_per_function = 1000 / region_size
    requests = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            gpus, milli = int(row["num_gpu"]), int(row["gpu_milli"] or 0)
            if gpus == 0:
                continue
            start = float(row["creation_time"] or 0)
            end = float(row["deletion_time"] or math.inf)
            if gpus == 1 and milli < 1000:
                requests.append(Request(start, end - start, max(
                    1, math.ceil(milli / milli_per_function))))
            else:
                requests.append(Request(start, end - start, region_size,
                                        whole_regions=gpus))
    return requests


def request_mix(requests: Sequence[Request]) -> tuple[packing.RequestShape,
                                                       ...]:
    counts: dict[tuple[int, bool], int] = {}
    for r in requests:
        key = (r.functions, bool(r.whole_regions))
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    return tuple(packing.RequestShape(size, whole, n / total)
                 for (size, whole), n in sorted(counts.items()))


# -- choosing ---------------------------------------------------------------

def candidates(host: Host, request: Request) -> list[dict[str, int]]:
    """What placement would return for this host, in its fixed order."""
    if request.whole_regions:
        whole = [r.name for r in host.regions
                 if r.used == 0 and r.capacity == request.functions]
        return [{name: request.functions for name in combo}
                for combo in itertools.islice(
                    itertools.combinations(whole, request.whole_regions),
                    64)]
    return [{r.name: request.functions} for r in host.regions
            if r.free >= request.functions]


@dataclass
class Policy:
    name: str
    mix: tuple[packing.RequestShape, ...]
    rng: random.Random

    def choose(self, hosts: list[Host], request: Request
               ) -> tuple[Host, dict[str, int]] | None:
        if self.name in SCORED_POLICIES:
            return self._scored(hosts, request)
        feasible = ((h, c) for h in hosts
                    for c in [candidates(h, request)] if c)
        if self.name == "placement-order":
            host, cands = next(feasible, (None, None))
            return (host, cands[0]) if host else None
        feasible = list(feasible)
        if not feasible:
            return None
        if self.name == "random":
            host, cands = self.rng.choice(feasible)
            return host, self.rng.choice(cands)
        # spread: the host with most free, then the emptiest regions
        host, cands = max(feasible, key=lambda hc: sum(
            r.free for r in hc[0].regions))
        free = {r.name: r.free for r in host.regions}
        return host, max(cands, key=lambda c: sum(free[n] for n in c))

    def _scored(self, hosts, request):
        best = None
        policy = SCORED_POLICIES[self.name]
        for host in hosts:
            cands = candidates(host, request)
            if not cands:
                continue
            ranked = packing.rank(cands, host.usage(), policy=policy,
                                  mix=self.mix)
            if not ranked:
                continue
            index, score = ranked[0]
            if best is None or score.value > best[0]:
                best = (score.value, host, cands[index])
        return (best[1], best[2]) if best else None


# -- metrics ----------------------------------------------------------------

def whole_free(hosts: Sequence[Host]) -> int:
    return sum(1 for h in hosts for r in h.regions if r.used == 0)


def fragmentation(hosts: Sequence[Host]) -> int:
    """Free functions outside whole free regions."""
    return sum(r.free for h in hosts for r in h.regions if r.used)


def compaction_bound(hosts: Sequence[Host]) -> int:
    """Whole regions that would be free if each host's used functions were
    packed perfectly into its largest regions first."""
    bound = 0
    for host in hosts:
        used = sum(r.used for r in host.regions)
        for region in sorted(host.regions, key=lambda r: -r.capacity):
            if used >= region.capacity:
                used -= region.capacity
            elif used > 0:
                used = 0
            else:
                bound += 1
    return bound


@dataclass
class Result:
    asked: dict[str, int] = field(default_factory=lambda: {
        "function": 0, "region": 0})
    rejected: dict[str, int] = field(default_factory=lambda: {
        "function": 0, "region": 0})
    timeline: list[tuple[float, float, int]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def simulate(cluster_spec: str, requests: Sequence[Request], policy: str,
             mode: str, fill_to: float, seed: int) -> Result:
    hosts = build_cluster(cluster_spec)
    capacity = sum(r.capacity for h in hosts for r in h.regions)
    chooser = Policy(policy, request_mix(requests), random.Random(seed))
    result = Result()
    if mode == "fill":
        order = list(requests)
        random.Random(seed).shuffle(order)
        events = []
        asked_functions = 0
        for request in order:
            if asked_functions >= fill_to * capacity:
                break
            asked_functions += request.functions * max(
                request.whole_regions, 1)
            events.append((0.0, 0, request))
    else:
        events = sorted(
            [(r.arrival, 0, r) for r in requests]
            + [(r.arrival + r.duration, -1, r) for r in requests
               if math.isfinite(r.duration)],
            key=lambda e: (e[0], e[1]))
    held: dict[int, tuple[Host, dict[str, int]]] = {}
    samples: list[dict[str, float]] = []
    every = max(len(events) // 200, 1)
    for step, (when, kind, request) in enumerate(events):
        if kind == -1:
            placed = held.pop(id(request), None)
            if placed:
                _apply(placed, -1)
            continue
        label = "region" if request.whole_regions else "function"
        result.asked[label] += 1
        choice = chooser.choose(hosts, request)
        if choice is None:
            result.rejected[label] += 1
        else:
            _apply(choice, +1)
            held[id(request)] = choice
        if step % every == 0:
            samples.append(_state(hosts, capacity))
            result.timeline.append((
                when if mode == "replay" else step,
                sum(result.rejected.values()) / sum(result.asked.values()),
                samples[-1]["fragmentation"]))
    # Fill mode reports the state it ends in (the paper's method); replay
    # the mean over the run, since everything has left by its end.
    final = _state(hosts, capacity)
    state = final if mode == "fill" or not samples else {
        key: sum(s[key] for s in samples) / len(samples) for key in final}
    result.metrics = {
        "region_rejection_rate": _rate(result, "region"),
        "function_rejection_rate": _rate(result, "function"),
        **state,
        "requests": sum(result.asked.values()),
    }
    return result


def _state(hosts: Sequence[Host], capacity: int) -> dict[str, float]:
    bound = compaction_bound(hosts)
    free_whole = whole_free(hosts)
    return {
        "utilisation": sum(r.used for h in hosts for r in h.regions)
        / capacity,
        "fragmentation": fragmentation(hosts),
        "whole_free_regions": free_whole,
        "compaction_bound": bound,
        "bound_fraction": free_whole / bound if bound else 1.0,
    }


def _rate(result: Result, label: str) -> float:
    asked = result.asked[label]
    return result.rejected[label] / asked if asked else 0.0


def _apply(placed: tuple[Host, dict[str, int]], sign: int) -> None:
    host, demand = placed
    for region in host.regions:
        region.used += sign * demand.get(region.name, 0)


# -- command line -----------------------------------------------------------

def _table(results: dict[str, Result]) -> str:
    keys = ["region_rejection_rate", "function_rejection_rate",
            "utilisation", "fragmentation", "bound_fraction"]
    heads = ["policy", "region rej.", "function rej.", "utilisation",
             "fragmentation", "of bound"]
    lines = ["  ".join(f"{h:>15}" for h in heads)]
    for name, res in results.items():
        cells = [name] + [f"{res.metrics[k]:.4f}" if isinstance(
            res.metrics[k], float) else str(res.metrics[k]) for k in keys]
        lines.append("  ".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def _plot(results: dict[str, Result], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    fig, (top, bottom) = pyplot.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, res in results.items():
        xs = [t for t, _, _ in res.timeline]
        top.plot(xs, [r for _, r, _ in res.timeline], label=name)
        bottom.plot(xs, [f for _, _, f in res.timeline], label=name)
    top.set_ylabel("rejection rate")
    bottom.set_ylabel("fragmented functions")
    bottom.set_xlabel("time")
    top.legend()
    fig.savefig(path)


def main(argv: Sequence[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="accel-sim", description="Replay accelerator requests on a "
        "simulated cloud under several placement policies, side by side.")
    parser.add_argument("--cluster", default="meeting",
                        help="meeting | homogeneous:HOSTS:RxF | mixed:HOSTS "
                             "| openb:NODES.csv")
    parser.add_argument("--workload", default="meeting",
                        help="meeting | poisson:N | csv:FILE | "
                             "openb:PODS.csv")
    parser.add_argument("--mode", choices=("replay", "fill"),
                        default="replay")
    parser.add_argument("--fill-to", type=float, default=1.3,
                        help="fill mode: stop once the requested functions "
                             "reach this share of capacity")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated, from: " + ", ".join(POLICIES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", metavar="FILE.png")
    args = parser.parse_args(argv)
    policies = [p.strip() for p in args.policies.split(",")]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policies: {', '.join(unknown)}")
    try:
        hosts = build_cluster(args.cluster)
        sizes = sorted({r.capacity for h in hosts for r in h.regions})
        requests = build_workload(args.workload, args.seed,
                                  max(sizes, key=lambda s: (
                                      sum(r.capacity == s for h in hosts
                                          for r in h.regions), s)))
    except (OSError, ValueError, KeyError) as exc:
        print(f"accel-sim: {exc}", file=sys.stderr)
        return 1
    results = {}
    for name in policies:
        print(f"accel-sim: {name}...", file=sys.stderr)
        results[name] = simulate(args.cluster, requests, name, args.mode,
                                 args.fill_to, args.seed)
    if args.json:
        json.dump({"policies": {n: r.metrics for n, r in results.items()}},
                  out, indent=1, sort_keys=True)
        out.write("\n")
    else:
        out.write(_table(results) + "\n")
    if args.plot:
        _plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
