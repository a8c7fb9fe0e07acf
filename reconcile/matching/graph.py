"""Matching a component as a bipartite graph: as many pairs as possible, then the closest.

Used where the time-ordered pass could be wrong: events that lack a field beside events that
have it, rows that lack one, costs alike only in a chain (A+2e is alike to A+e and A+3e, A
only to A+e). Each component splits at pauses longer than any window; each burst's possible
pairs are listed and matched: small bursts by an assignment that bills as many rows as
possible, then prefers equal costs, then the smallest time gaps (scipy's
`linear_sum_assignment`); large ones by Hopcroft-Karp (`maximum_bipartite_matching`).
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reconcile.matching.in_time import Part
from reconcile.matching.keys import expand, order_by, time_ranges
from reconcile.matching.sides import COST, FIELDS, Side
from reconcile.matching.types import MatchSettings

#: Bursts up to this many rows and events get the preference-aware assignment (cubic time).
DENSE_LIMIT = 400


def alike(
    rows: Side, events: Side, row: np.ndarray, event: np.ndarray, tolerance: float
) -> np.ndarray:
    """Whether each (row, event) agrees on the subscription and every field both know."""
    same: np.ndarray = (rows.subscription[row] == events.subscription[event]) & (
        rows.subscription[row] >= 0
    )
    for field in range(len(FIELDS)):
        both = rows.known[field][row] & events.known[field][event]
        if field == COST:
            row_cost, event_cost = rows.cost[row], events.cost[event]
            bound = tolerance * np.maximum(np.abs(row_cost), np.abs(event_cost))
            equal = np.abs(row_cost - event_cost) <= bound
        else:
            equal = rows.values[field][row] == events.values[field][event]
        same &= ~both | equal
    return same


def candidate_pairs(
    rows: Side, events: Side, row_part: Part, event_part: Part, settings: MatchSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Every (row, event) of one group or component whose times and fields allow a match."""
    (row_index, row_key), (event_index, event_key) = row_part, event_part
    time = events.time[event_index]
    order, start, stop = time_ranges(
        row_key,
        rows.time[row_index],
        event_key,
        time - settings.max_delay_ms,
        time + settings.skew_ms,
    )
    query, position = expand(start, stop)
    row, event = row_index[order[position]], event_index[query]
    keep = alike(rows, events, row, event, settings.cost_tolerance)
    return row[keep], event[keep]


def match_graph(
    rows: Side, events: Side, row_part: Part, event_part: Part, settings: MatchSettings
) -> np.ndarray:
    """(row, event) position pairs, one-to-one, a maximum matching within each component."""
    if not len(row_part[0]) or not len(event_part[0]):
        return np.zeros((0, 2), dtype=np.int64)
    row, event = candidate_pairs(rows, events, row_part, event_part, settings)
    if not len(row):
        return np.zeros((0, 2), dtype=np.int64)
    # Bursts: pairs linked through shared rows or events, cut where nothing links them.
    burst = _bursts(row, event)
    found = []
    order = order_by(burst, np.zeros(len(burst), dtype=np.int64))
    bounds = np.flatnonzero(np.r_[True, burst[order][1:] != burst[order][:-1], True])
    for start, stop in itertools.pairwise(bounds.tolist()):
        chosen = order[start:stop]
        found.append(_match_burst(rows, events, row[chosen], event[chosen]))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def _bursts(row: np.ndarray, event: np.ndarray) -> np.ndarray:
    """The connected part of the pair graph each pair belongs to."""
    import scipy.sparse  # noqa: PLC0415 (scipy takes 0.4 s to import: only when needed)
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    row_ids, row_node = np.unique(row, return_inverse=True)
    _, event_node = np.unique(event, return_inverse=True)
    count = len(row_ids) + int(event_node.max()) + 1
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(row), dtype=np.int8), (row_node, len(row_ids) + event_node)),
        shape=(count, count),
    )
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)[row_node]


def _match_burst(rows: Side, events: Side, row: np.ndarray, event: np.ndarray) -> np.ndarray:
    """A maximum matching over the listed pairs; preferences where the burst is small."""
    import scipy.sparse  # noqa: PLC0415 (scipy takes 0.4 s to import: only when needed)
    from scipy.optimize import linear_sum_assignment  # noqa: PLC0415
    from scipy.sparse.csgraph import maximum_bipartite_matching  # noqa: PLC0415

    # Nodes in a canonical order (time, then name): the result never depends on input order.
    row_ids, event_ids = _canonical(rows, np.unique(row)), _canonical(events, np.unique(event))
    r, e = _nodes(row_ids, row), _nodes(event_ids, event)
    if len(row_ids) <= DENSE_LIMIT and len(event_ids) <= DENSE_LIMIT:
        # Weights: any pair beats none, then equal costs, then the smallest time gaps.
        gap = np.abs(events.time[event] - rows.time[row]).astype(np.float64)
        pairs = min(len(row_ids), len(event_ids))
        inexact_weight = float(gap.max()) * pairs + 1.0
        weight = gap + inexact_weight * (rows.cost[row] != events.cost[event])
        missing_weight = (float(gap.max()) + inexact_weight) * pairs + 1.0
        cost = np.full((len(row_ids), len(event_ids)), missing_weight)
        edge = np.zeros(cost.shape, dtype=bool)
        cost[r, e], edge[r, e] = weight, True
        chosen_rows, chosen_events = linear_sum_assignment(cost)
        real = edge[chosen_rows, chosen_events]
        return np.column_stack([row_ids[chosen_rows[real]], event_ids[chosen_events[real]]])
    # The smaller side as the matrix's rows: SciPy's Hopcroft-Karp stalled for minutes on a
    # burst of 6,354 rows and 5,205 events (94,270 pairs) the other way round, at once so.
    if len(row_ids) > len(event_ids):
        graph = scipy.sparse.csr_matrix(
            (np.ones(len(r), dtype=np.int8), (e, r)), shape=(len(event_ids), len(row_ids))
        )
        partner = np.asarray(maximum_bipartite_matching(graph, perm_type="column"))
        matched = np.flatnonzero(partner >= 0)
        return np.column_stack([row_ids[partner[matched]], event_ids[matched]])
    graph = scipy.sparse.csr_matrix(
        (np.ones(len(r), dtype=np.int8), (r, e)), shape=(len(row_ids), len(event_ids))
    )
    partner = np.asarray(maximum_bipartite_matching(graph, perm_type="column"))
    matched = np.flatnonzero(partner >= 0)
    return np.column_stack([row_ids[matched], event_ids[partner[matched]]])


def _canonical(side: Side, positions: np.ndarray) -> np.ndarray:
    """The positions sorted by time, then name (request_id or transaction_id)."""
    table = pa.table(
        {"time": side.time[positions], "name": side.name.take(pa.array(positions, pa.int64()))}
    )
    order = pc.sort_indices(table, sort_keys=[("time", "ascending"), ("name", "ascending")])
    ordered: np.ndarray = positions[order.to_numpy()]
    return ordered


def _nodes(canonical: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Each position's index in `canonical` (which holds each position once)."""
    permutation = np.argsort(canonical)
    return permutation[np.searchsorted(canonical[permutation], positions)]
