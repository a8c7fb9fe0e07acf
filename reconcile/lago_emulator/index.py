"""Stored events kept in listing order, so that a GET /events bisects to the rows it lists."""

from __future__ import annotations

import bisect
import dataclasses
from collections import OrderedDict
from collections.abc import Sequence

_RANGES_KEPT = 16  # sorted ranges kept for the next pages (ClickHouse)
_Filter = tuple[str | None, str | None]  # code, subscription; None: not filtered


@dataclasses.dataclass(frozen=True)
class _View:
    """The events one code and subscription filter keep, latest filtered time first."""

    rows: list[int]  # event numbers (reception order)
    keys: list[int]  # minus each one's filtered time: ascending, for bisect


_NOTHING = _View([], [])


class EventIndex:
    """What a listing filters and sorts each event by, and views rebuilt when events came in.

    Each event added gets its number (0, 1, ...: reception order), its code and subscription
    as the store shows them, the time `timestamp_from` and `timestamp_to` bound (`filtered`),
    the time it is listed by, latest first (`listed`), and the transaction_id that breaks ties,
    reception order breaking the rest. A subscription of None is never matched by a filter.

    A view per filter (code or none, subscription or none) holds its events by filtered time,
    latest first, so a time range is a slice found by bisection. Where events are listed by
    that same time (Postgres) the slice is the answer; else (ClickHouse lists by reception)
    it is sorted into listing order once and kept for the next pages. Nothing is sorted until
    a listing asks, and then only if events were added since (`version` moved).
    """

    def __init__(self, *, listed_by_filtered_time: bool) -> None:
        self._aligned = listed_by_filtered_time  # then a filtered range is in listing order
        self._codes: list[str] = []
        self._subscriptions: list[str | None] = []
        self._filtered: list[int] = []
        self._listed: list[int] = []
        self._transaction_ids: list[str] = []
        self.version = 0  # bumped by every event added
        self._built = 0  # the version the views below describe
        self._order: list[int] = []  # every event, in listing order
        self._rank: list[int] = []  # each event's place in _order (unless aligned)
        self._views: dict[_Filter, _View] = {(None, None): _NOTHING}
        self._families: set[bool] = set()  # grouped by code (False), by subscription (True)
        self._ranges: OrderedDict[tuple[_Filter, int, int], list[int]] = OrderedDict()

    def add(
        self,
        code: str,
        subscription: str | None,
        filtered: int,
        listed: int,
        transaction_id: str,
    ) -> None:
        """One more event, numbered after the last."""
        self._codes.append(code)
        self._subscriptions.append(subscription)
        self._filtered.append(filtered)
        self._listed.append(listed)
        self._transaction_ids.append(transaction_id)
        self.version += 1

    def rows(
        self,
        code: str | None,
        subscription: str | None,
        since: int | None,
        until: int | None,
    ) -> tuple[Sequence[int], int, int]:
        """The events a listing keeps, in listing order: `rows[start:stop]` of the answer.

        None leaves a filter out; `since` and `until` bound the filtered time, both included.
        """
        if self._built != self.version:
            self._rebuild()
        view = self._view(code, subscription)
        start = 0 if until is None else bisect.bisect_left(view.keys, -until)
        stop = len(view.keys) if since is None else bisect.bisect_right(view.keys, -since)
        stop = max(start, stop)
        if self._aligned:
            return view.rows, start, stop
        key = ((code, subscription), start, stop)
        ranked = self._ranges.pop(key, None)
        if ranked is None:
            ranked = sorted(view.rows[start:stop], key=self._rank.__getitem__)
        self._ranges[key] = ranked
        while len(self._ranges) > _RANGES_KEPT:
            self._ranges.popitem(last=False)
        return ranked, 0, len(ranked)

    def _rebuild(self) -> None:
        """Sort anew: the last order, then the events added since (nearly sorted: fast).

        A few events added to many (a batch POSTed between two listings, as a database's
        index takes them) are put in their places instead, in every view built.
        """
        added = range(len(self._order), self.version)
        if self._aligned and self._order and len(added) <= max(1_000, len(self._order) // 50):
            for row in added:
                self._insert(row)
            self._ranges.clear()
            self._built = self.version
            return
        listed, transaction_ids = self._listed, self._transaction_ids
        order = self._order + list(range(len(self._order), self.version))
        order.sort(key=lambda row: (-listed[row], transaction_ids[row]))  # stable
        self._order = order
        if self._aligned:
            by_filtered = order
        else:
            self._rank = [0] * len(order)
            for place, row in enumerate(order):
                self._rank[row] = place
            by_filtered = sorted(order, key=self._filtered.__getitem__, reverse=True)
        keys = [-self._filtered[row] for row in by_filtered]
        self._views = {(None, None): _View(by_filtered, keys)}
        self._families.clear()
        self._ranges.clear()
        self._built = self.version

    def _insert(self, row: int) -> None:
        """Put one event in its place in each view built, after its equals (a stable sort's).

        Aligned, the view of everything is the order itself.
        """
        code, subscription = self._codes[row], self._subscriptions[row]
        names: list[tuple[_Filter, bool | None]] = [((None, None), None), ((code, None), False)]
        if subscription is not None:
            names += [((code, subscription), True), ((None, subscription), True)]
        for name, family in names:
            view = self._views.get(name)
            if view is None and family in self._families:  # a code or subscription first seen
                view = self._views[name] = _View([], [])
            if view is None:
                continue
            at = bisect.bisect_right(view.rows, self._sort_key(row), key=self._sort_key)
            view.rows.insert(at, row)
            view.keys.insert(at, -self._filtered[row])

    def _sort_key(self, row: int) -> tuple[int, str]:
        return -self._listed[row], self._transaction_ids[row]

    def _view(self, code: str | None, subscription: str | None) -> _View:
        by_subscription = subscription is not None
        if (code, subscription) not in self._views and by_subscription not in self._families:
            self._group(by_subscription=by_subscription)
        return self._views.get((code, subscription), _NOTHING)

    def _group(self, *, by_subscription: bool) -> None:
        """Every view of one family in one pass over all events, each kept in order."""
        everything = self._views[None, None]
        views: dict[_Filter, _View] = {}
        for row, key in zip(everything.rows, everything.keys, strict=True):
            code, subscription = self._codes[row], self._subscriptions[row]
            if not by_subscription:
                names: tuple[_Filter, ...] = ((code, None),)
            elif subscription is None:
                continue
            else:
                names = ((code, subscription), (None, subscription))
            for name in names:
                view = views.get(name)
                if view is None:
                    view = views[name] = _View([], [])
                view.rows.append(row)
                view.keys.append(key)
        self._views.update(views)
        self._families.add(by_subscription)
