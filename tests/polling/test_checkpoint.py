from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.polling.checkpoint import Checkpoint, WindowFilter

OVERLAP = 10_000


def _poll(checkpoint: Checkpoint, visible: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], Checkpoint]:
    """What one filter-mode poll publishes, given the records the source returns."""
    window = WindowFilter(checkpoint, OVERLAP)
    published = [pair for pair in visible if window.admit(*pair)]
    return published, window.next_checkpoint()


def test_records_sharing_the_boundary_timestamp_split_across_polls_are_each_published_once() -> None:
    start = Checkpoint(started_ms=1_000_000, url="u")
    first, after_first = _poll(start, [("a", 1_005_000), ("b", 1_005_000)])
    # "c" shares the boundary timestamp but became visible only after the first poll.
    second, _ = _poll(after_first, [("a", 1_005_000), ("b", 1_005_000), ("c", 1_005_000)])
    assert first == [("a", 1_005_000), ("b", 1_005_000)]
    assert second == [("c", 1_005_000)]


def test_a_late_commit_inside_the_overlap_is_published_and_one_beyond_it_is_not() -> None:
    checkpoint = Checkpoint(started_ms=0, url="u", watermark_ms=100_000, seen=frozenset({("a", 100_000)}))
    published, after = _poll(checkpoint, [("late", 95_000), ("too-late", 89_000), ("a", 100_000)])
    assert published == [("late", 95_000)]
    assert after.watermark_ms == 100_000


def test_an_update_of_a_published_record_is_published_again() -> None:
    checkpoint = Checkpoint(started_ms=0, url="u", watermark_ms=100_000, seen=frozenset({("a", 100_000)}))
    published, after = _poll(checkpoint, [("a", 100_000), ("a", 101_000)])
    assert published == [("a", 101_000)]
    assert after.seen == frozenset({("a", 100_000), ("a", 101_000)})


def test_seen_pairs_older_than_the_window_are_dropped() -> None:
    checkpoint = Checkpoint(started_ms=0, url="u", watermark_ms=100_000, seen=frozenset({("a", 95_000)}))
    _, after = _poll(checkpoint, [("b", 120_000)])
    assert after.seen == frozenset({("b", 120_000)})


def test_a_poll_with_nothing_new_keeps_the_checkpoint_identical() -> None:
    checkpoint = Checkpoint(started_ms=0, url="u", watermark_ms=100_000, seen=frozenset({("a", 100_000)}))
    _, after = _poll(checkpoint, [("a", 100_000)])
    assert after is checkpoint


_changes = st.lists(
    st.tuples(st.sampled_from("abcdefgh"), st.integers(min_value=0, max_value=60_000)),
    min_size=0,
    max_size=40,
)


@given(history=_changes, cut_points=st.lists(st.integers(min_value=0, max_value=40), max_size=5))
def test_every_change_is_published_exactly_once_however_the_polls_fall(
    history: list[tuple[str, int]], cut_points: list[int]
) -> None:
    """Changes become visible over time (never later than OVERLAP behind the newest visible one);
    each poll sees every visible change; every distinct (id, updated) pair is published once."""
    history = sorted(set(history), key=lambda pair: pair[1])
    checkpoint = Checkpoint(started_ms=-1, url="u")
    published: list[tuple[str, int]] = []
    for cut in [*sorted(cut_points), len(history)]:
        visible = history[:cut]
        batch, checkpoint = _poll(checkpoint, visible)
        published.extend(batch)
    assert sorted(published) == sorted(history)
