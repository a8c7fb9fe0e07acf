"""Which rows and events may bill each other: groups settled in time order, a few graphs.

An event may bill a row when they agree on every field both know (FIELDS: model, tokens, cost;
a null is unknown, never a mismatch), on the subscription, and in time. Events knowing the same
fields (one shape) and rows knowing the same fields split into groups of equal known values:
within a group every event may bill every row, times permitting. Most groups stand alone, and
a time-ordered pass matches them as well as anything could. A row or event in two groups (an
event that lacks the model, say, beside events that have it), or a group whose costs are only
alike in a chain, joins its groups into one component, matched as a bipartite graph.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reconcile.matching.keys import combine
from reconcile.matching.sides import COST, FIELDS, Side


@dataclasses.dataclass(frozen=True)
class Partition:
    """Candidates split: groups matched in time order, components matched as graphs.

    Each array pair is (positions into rows or events, the group or component of each).
    """

    group_rows: tuple[np.ndarray, np.ndarray]
    group_events: tuple[np.ndarray, np.ndarray]
    component_rows: tuple[np.ndarray, np.ndarray]
    component_events: tuple[np.ndarray, np.ndarray]


def partition(
    rows: Side, events: Side, row_index: np.ndarray, event_index: np.ndarray
) -> Partition:
    """Group the candidate rows and events (positions) that may bill each other."""
    row_index = row_index[rows.subscription[row_index] >= 0]
    event_index = event_index[events.subscription[event_index] >= 0]
    row_shape, event_shape = rows.shape[row_index], events.shape[event_index]
    members: list[tuple[int, np.ndarray, np.ndarray]] = []  # (side, positions, groups)
    loose_groups: list[np.ndarray] = []
    offset = 0
    for event_kind in np.unique(event_shape).tolist():
        chosen_events = event_index[event_shape == event_kind]
        for row_kind in np.unique(row_shape).tolist():
            chosen_rows = row_index[row_shape == row_kind]
            common = [field for field in range(len(FIELDS)) if (event_kind & row_kind) >> field & 1]
            columns = [
                np.concatenate([rows.subscription[chosen_rows], events.subscription[chosen_events]])
            ] + [
                np.concatenate(
                    [rows.values[field][chosen_rows], events.values[field][chosen_events]]
                )
                for field in common
            ]
            key = combine(columns, len(chosen_rows) + len(chosen_events))
            del columns  # a million-row column per field: gone before the next combination
            row_key, event_key = key[: len(chosen_rows)], key[len(chosen_rows) :]
            count = int(key.max()) + 1 if len(key) else 0
            on_both = (np.bincount(row_key, minlength=count) > 0) & (
                np.bincount(event_key, minlength=count) > 0
            )
            keep_rows, keep_events = on_both[row_key], on_both[event_key]
            members.append((0, chosen_rows[keep_rows], offset + row_key[keep_rows]))
            members.append((1, chosen_events[keep_events], offset + event_key[keep_events]))
            if COST in common:
                loose_rows = keep_rows & rows.loose[chosen_rows]
                loose_events = keep_events & events.loose[chosen_events]
                loose_groups += [offset + row_key[loose_rows], offset + event_key[loose_events]]
            offset += count
    component = _components(members, offset)
    joined = np.bincount(component[_used(members, offset)], minlength=offset) > 1
    for groups in loose_groups:
        joined[component[groups]] = True  # loose costs: the whole component as a graph
    in_groups: list[list[tuple[np.ndarray, np.ndarray]]] = [[], []]
    in_components: list[list[tuple[np.ndarray, np.ndarray]]] = [[], []]
    for side, positions, groups in members:
        alone = ~joined[component[groups]]
        in_groups[side].append((positions[alone], groups[alone]))
        in_components[side].append((positions[~alone], component[groups[~alone]]))
    return Partition(
        group_rows=_concat(in_groups[0]),
        group_events=_concat(in_groups[1]),
        component_rows=_unique(_concat(in_components[0])),
        component_events=_unique(_concat(in_components[1])),
    )


def _used(members: list[tuple[int, np.ndarray, np.ndarray]], count: int) -> np.ndarray:
    """Which group ids have members."""
    used = np.zeros(count, dtype=bool)
    for _, _, groups in members:
        used[groups] = True
    return used


def _components(members: list[tuple[int, np.ndarray, np.ndarray]], count: int) -> np.ndarray:
    """The component of every group: groups sharing a row or an event are joined."""
    links = []
    for side in (0, 1):
        positions = [found for kind, found, _ in members if kind == side]
        groups = [groups for kind, _, groups in members if kind == side]
        if not positions:
            continue
        position, group = np.concatenate(positions), np.concatenate(groups)
        order = np.argsort(position, kind="stable")
        position, group = position[order], group[order]
        repeat = np.flatnonzero(position[1:] == position[:-1])
        links.append(np.column_stack([group[repeat], group[repeat + 1]]))
    pairs = np.concatenate(links) if links else np.zeros((0, 2), dtype=np.int64)
    if not len(pairs):
        return np.arange(count, dtype=np.int64)
    import scipy.sparse  # noqa: PLC0415 (only when groups are joined: a slow import)
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    graph = scipy.sparse.coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(count, count)
    )
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return (
        np.concatenate([part[0] for part in parts]).astype(np.int64),
        np.concatenate([part[1] for part in parts]).astype(np.int64),
    )


def _unique(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each position once (an element in several groups of one component)."""
    positions, labels = pair
    kept, first = np.unique(positions, return_index=True)
    return kept, labels[first]
