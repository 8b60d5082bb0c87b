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

"""Clusters for the planner's tests and benchmark, written as what each
region holds, and the plain greedy the planner is held to."""

import random

from accel_defrag import cluster as cl

RC = "CUSTOM_ACCEL_FPGA"
ROOM = {"VCPU": 64, "MEMORY_MB": 262144, "DISK_GB": 2000}
SERVER_ROOT = {"VCPU": 2, "MEMORY_MB": 4096, "DISK_GB": 20}


def build(hosts, *, size=4, move="cold", room=None, root=None,
          same_host_moves=(), pinned=("spare",)):
    """``hosts``: host name -> list of regions, each a list of (server,
    functions) pairs; a server named in several regions of its host
    holds functions of each. ``room``: host name -> its root's room left
    (default ROOM less what its servers take). The regions of the
    ``pinned`` hosts are of a kind that cannot move: only destinations."""
    cluster = cl.Cluster()
    for host, regions in hosts.items():
        taken = {}
        for index, held in enumerate(regions):
            region = f"{host}/r{index}"
            cluster.regions[region] = cl.Region(
                uuid=region, name=region, host=host, card=f"{host}/c",
                resource_class=RC, size=size, capacity=size,
                used=sum(amount for _, amount in held),
                move="none" if host in pinned else move)
            for server, amount in held:
                s = cluster.servers.setdefault(server, cl.Server(
                    uuid=server, host=host,
                    root=dict(SERVER_ROOT if root is None else root)))
                assert s.host == host, f"{server} on two hosts"
                s.regions[region] = amount
                taken[server] = s.root
        free = dict((room or {}).get(host, ROOM))
        if room is None or host not in room:
            for server_root in taken.values():
                for rc, amount in server_root.items():
                    free[rc] -= amount
        cluster.hosts[host] = cl.Host(uuid=host, name=host, free=free,
                                      same_host_moves=host in same_host_moves)
    return cluster


def greedy_moves(cluster, resource_class, size, count):
    """Moves of the obvious greedy: the regions with the fewest holders
    first, each holder counted once; destinations not checked."""
    held = cl.holders(cluster)
    used = sorted((r for r in cluster.regions.values()
                   if r.resource_class == resource_class and r.size == size
                   and r.used), key=lambda r: (len(held[r.uuid]), r.name))
    moved = set()
    for region in used[:count]:
        moved |= set(held[region.uuid])
    return len(moved)


def random_cloud(hosts, regions_per_host, seed, *, fill=0.55, size=4,
                 spanning=0.1):
    """A cloud of ``hosts`` hosts of ``regions_per_host`` regions of
    ``size`` functions, filled to about ``fill`` by servers of 1, 2 or 3
    functions (a share ``spanning`` of them taking functions of two
    regions), as weeks of boots and deletes leave it."""
    rng = random.Random(seed)
    spec = {}
    count = 0
    for h in range(hosts):
        regions = [[] for _ in range(regions_per_host)]
        used = [0] * regions_per_host
        for _ in range(int(regions_per_host * size * fill / 2)):
            count += 1
            name = f"s{count}"
            amount = rng.choice((1, 1, 2, 3))
            if rng.random() < spanning:
                pair = rng.sample(range(regions_per_host), 2)
                if all(used[p] + 1 <= size for p in pair):
                    for p in pair:
                        regions[p].append((name, 1))
                        used[p] += 1
                continue
            r = rng.randrange(regions_per_host)
            if used[r] + amount <= size:
                regions[r].append((name, amount))
                used[r] += amount
        spec[f"host{h:05d}"] = regions
    return build(spec, size=size)
