"""Stored events kept in listing order, so that a GET /events bisects to the rows it lists."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

from sortedcontainers import SortedKeyList

_RANGES_KEPT = 16  # sorted ranges kept for the next pages (ClickHouse)
_Filter = tuple[str | None, str | None]  # code, subscription; None: not filtered
_View = SortedKeyList[int, tuple[int | str, ...]]
"""The events one code and subscription filter keep, ordered by (minus filtered time, tie)."""


class EventIndex:
    """What a listing filters and sorts each event by, and views rebuilt when events came in.

    Each event added gets its number (0, 1, ...: reception order), its code and subscription
    as the store shows them, the time `timestamp_from` and `timestamp_to` bound (`filtered`),
    the time it is listed by, latest first (`listed`), and the transaction_id that breaks ties,
    reception order breaking the rest. A subscription of None is never matched by a filter.

    A view per filter (code or none, subscription or none) holds its events by filtered time,
    latest first, so a time range is a slice found by bisection. Where events are listed by
    that same time (Postgres) the slice is the answer, and an event added later is put in its
    place in each view (a sorted list's insert, as a database's index takes it: no resort, no
    copy of millions of numbers); else (ClickHouse lists by reception) the slice is sorted into
    listing order once and kept for the next pages. Nothing is sorted until a listing asks, and
    then only if events were added since (`version` moved).
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
        self._order: list[int] = []  # every event, in listing order (unless aligned)
        self._rank: list[int] = []  # each event's place in _order (unless aligned)
        self._views: dict[_Filter, _View] = {(None, None): self._new_view([])}
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
        start = 0 if until is None else view.bisect_key_left((-until,))
        stop = len(view) if since is None else view.bisect_key_left((-since + 1,))
        stop = max(start, stop)
        if self._aligned:
            return view, start, stop
        key = ((code, subscription), start, stop)
        ranked = self._ranges.pop(key, None)
        if ranked is None:
            ranked = sorted(view[start:stop], key=self._rank.__getitem__)
        self._ranges[key] = ranked
        while len(self._ranges) > _RANGES_KEPT:
            self._ranges.popitem(last=False)
        return ranked, 0, len(ranked)

    def _rebuild(self) -> None:
        """Take in the events added since the views were built.

        A few events added to many (a batch POSTed between two listings), when aligned, are
        put in their places in every view built. Else the views are built anew: aligned, by
        sorting every event; else the listing order is sorted anew (the last order, then the
        events added since: nearly sorted, fast) and the views of filtered time follow it.
        """
        added = self.version - self._built
        if self._aligned and self._built and added <= max(1_000, self._built // 50):
            for row in range(self._built, self.version):
                self._insert(row)
            self._ranges.clear()
            self._built = self.version
            return
        everything = list(range(self.version))
        if not self._aligned:
            listed, transaction_ids = self._listed, self._transaction_ids
            order = self._order + everything[len(self._order) :]
            order.sort(key=lambda row: (-listed[row], transaction_ids[row]))  # stable
            self._order, self._rank = order, [0] * len(order)
            for place, row in enumerate(order):
                self._rank[row] = place
            everything = order
        self._views = {(None, None): self._new_view(everything)}
        self._families.clear()
        self._ranges.clear()
        self._built = self.version

    def _insert(self, row: int) -> None:
        """Put one event in its place in each view built, after its equals (a stable sort's)."""
        code, subscription = self._codes[row], self._subscriptions[row]
        names: list[tuple[_Filter, bool | None]] = [((None, None), None), ((code, None), False)]
        if subscription is not None:
            names += [((code, subscription), True), ((None, subscription), True)]
        for name, family in names:
            view = self._views.get(name)
            if view is None and family in self._families:  # a code or subscription first seen
                view = self._views[name] = self._new_view([])
            if view is not None:
                view.add(row)

    def _new_view(self, rows: list[int]) -> _View:
        """A view of these events, ordered by filtered time, latest first, then as listed."""
        filtered, transaction_ids, rank = self._filtered, self._transaction_ids, self._rank
        sort_key: Callable[[int], tuple[int | str, ...]]
        if self._aligned:  # listed by filtered time, then transaction_id

            def sort_key(row: int) -> tuple[int | str, ...]:
                return -filtered[row], transaction_ids[row]

        else:  # listed by reception: ties in filtered time keep the listing order

            def sort_key(row: int) -> tuple[int | str, ...]:
                return -filtered[row], rank[row]

        return SortedKeyList(rows, key=sort_key)

    def _view(self, code: str | None, subscription: str | None) -> _View:
        by_subscription = subscription is not None
        if (code, subscription) not in self._views and by_subscription not in self._families:
            self._group(by_subscription=by_subscription)
        return self._views.get((code, subscription), self._new_view([]))

    def _group(self, *, by_subscription: bool) -> None:
        """Every view of one family in one pass over all events."""
        views: dict[_Filter, list[int]] = {}
        for row in self._views[None, None]:
            code, subscription = self._codes[row], self._subscriptions[row]
            if not by_subscription:
                names: tuple[_Filter, ...] = ((code, None),)
            elif subscription is None:
                continue
            else:
                names = ((code, subscription), (None, subscription))
            for name in names:
                views.setdefault(name, []).append(row)
        self._views.update((name, self._new_view(rows)) for name, rows in views.items())
        self._families.add(by_subscription)
