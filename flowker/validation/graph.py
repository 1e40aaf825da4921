"""Structural checks of a workflow graph: ids, edges, the trigger, cycles,
reachability and conditional branches.

Written to run on bodies that may also have schema problems: malformed nodes and
edges are skipped here (the schema check reports them).
"""

from __future__ import annotations

from collections import deque

from flowker.validation.problems import ProblemList

BRANCH_HANDLES = ("true", "false")


def _indexed(body: dict, key: str) -> list[tuple[int, dict]]:
    items = body.get(key)
    if not isinstance(items, list):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, dict)]


def node_ids(body: dict) -> set[str]:
    return {node["id"] for _, node in _indexed(body, "nodes") if isinstance(node.get("id"), str)}


def check_graph(body: dict, problems: ProblemList) -> None:
    # Nodes whose id is not a string are schema problems, reported there; skip them here.
    nodes = [(index, node) for index, node in _indexed(body, "nodes") if isinstance(node.get("id"), str)]
    edges = _indexed(body, "edges")
    index_of = _check_node_ids(nodes, problems)
    types = {node["id"]: node.get("type") for _, node in nodes if node["id"] in index_of}
    links = _check_edges(edges, index_of, problems)
    triggers = _check_triggers(nodes, index_of, links, problems)
    _check_cycles(index_of, links, problems)
    if not isinstance(body.get("edges"), list):
        # No edges to speak of (missing, misspelt, not a list): the schema check names
        # that once; every node "unreachable" and every branch "missing" would only
        # repeat it as ten consequences.
        return
    if triggers:
        _check_reachability(index_of, types, triggers, links, problems)
    _check_branches(index_of, types, edges, links, problems)


def _check_node_ids(nodes, problems: ProblemList) -> dict[str, int]:
    index_of: dict[str, int] = {}
    for index, node in nodes:
        node_id = node.get("id")
        if not isinstance(node_id, str):
            continue
        if node_id in index_of:
            problems.add(
                ("nodes", index, "id"), f"duplicate node id {node_id!r} (first used by nodes[{index_of[node_id]}])"
            )
        else:
            index_of[node_id] = index
    return index_of


def _check_edges(edges, index_of, problems: ProblemList) -> list[tuple[int, str, str]]:
    """Edges whose ends both exist, as (edge index, source, target)."""
    links = []
    edge_ids: dict[str, int] = {}
    for index, edge in edges:
        edge_id = edge.get("id")
        if isinstance(edge_id, str):
            if edge_id in edge_ids:
                problems.add(
                    ("edges", index, "id"), f"duplicate edge id {edge_id!r} (first used by edges[{edge_ids[edge_id]}])"
                )
            else:
                edge_ids[edge_id] = index
        ends_ok = True
        for end in ("source", "target"):
            value = edge.get(end)
            if not isinstance(value, str):
                ends_ok = False
            elif value not in index_of:
                problems.add(("edges", index, end), f"edge {end} {value!r} is not a node id")
                ends_ok = False
        if ends_ok:
            links.append((index, edge["source"], edge["target"]))
    return links


def _check_triggers(nodes, index_of, links, problems: ProblemList) -> list[str]:
    triggers = [
        node["id"] for index, node in nodes if node.get("type") == "trigger" and index_of.get(node.get("id")) == index
    ]
    if not triggers and nodes:
        problems.add(("nodes",), "the workflow has no trigger node: it needs exactly one")
    for extra in triggers[1:]:
        problems.add(
            ("nodes", index_of[extra], "type"),
            f"second trigger node {extra!r}: a workflow has exactly one trigger (the first is {triggers[0]!r})",
        )
    trigger_set = set(triggers)
    for edge_index, _source, target in links:
        if target in trigger_set:
            problems.add(
                ("edges", edge_index, "target"), f"edge into trigger {target!r}: a trigger has no incoming edges"
            )
    return triggers


def _check_cycles(index_of, links, problems: ProblemList) -> None:
    """Report each edge that closes a cycle, naming the cycle's nodes."""
    outgoing: dict[str, list[tuple[int, str]]] = {node_id: [] for node_id in index_of}
    for edge_index, source, target in links:
        outgoing[source].append((edge_index, target))
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for start in index_of:
        if start in state:
            continue
        path = [start]
        state[start] = 1
        iterators = [iter(outgoing[start])]
        while iterators:  # iterative DFS: at most one visit per node and edge
            step = next(iterators[-1], None)
            if step is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            edge_index, target = step
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                problems.add(("edges", edge_index), f"cycle: {' -> '.join(cycle)}")
            elif target not in state:
                state[target] = 1
                path.append(target)
                iterators.append(iter(outgoing[target]))


def _check_reachability(index_of, types, triggers, links, problems: ProblemList) -> None:
    outgoing: dict[str, list[str]] = {node_id: [] for node_id in index_of}
    for _, source, target in links:
        outgoing[source].append(target)
    seen = set(triggers)
    queue = deque(triggers)
    while queue:
        for target in outgoing[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    for node_id, index in index_of.items():
        if node_id not in seen and types.get(node_id) != "trigger":
            problems.add(("nodes", index, "id"), f"node {node_id!r} is not reachable from the trigger")


def _check_branches(index_of, types, edges, links, problems: ProblemList) -> None:
    edge_by_index = dict(edges)
    handles: dict[str, set[str]] = {node_id: set() for node_id, kind in types.items() if kind == "conditional"}
    for edge_index, source, _ in links:
        if source not in handles:
            continue
        handle = edge_by_index[edge_index].get("sourceHandle")
        if handle in BRANCH_HANDLES:
            handles[source].add(handle)
        else:
            problems.add(
                ("edges", edge_index),
                f'edge from conditional {source!r} needs sourceHandle "true" or "false"',
            )
    for node_id, found in handles.items():
        for handle in BRANCH_HANDLES:
            if handle not in found:
                problems.add(
                    ("nodes", index_of[node_id]),
                    f'conditional {node_id!r} has no {handle!r} edge (an edge with sourceHandle: "{handle}")',
                )
