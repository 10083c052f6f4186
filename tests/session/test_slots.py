from session.slots import LatestSlot


def test_newest_item_wins_and_replacements_are_counted() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1
    assert slot.put(3) == 2
    assert slot.replaced == 2
    assert slot.take() == 3
    assert slot.take() is None
    assert not slot


def test_taken_items_are_not_counted_as_replaced() -> None:
    slot: LatestSlot[str] = LatestSlot()
    for item in "abc":
        slot.put(item)
        assert slot.peek() == item
        assert slot.take() == item
    assert slot.replaced == 0


def test_a_wider_slot_keeps_the_newest_items_in_order_and_counts_the_oldest_it_drops() -> None:
    slot: LatestSlot[int] = LatestSlot(capacity=3)
    for item in range(1, 6):
        slot.put(item)
    assert slot.replaced == 2  # 1 and 2 were pushed out
    assert len(slot) == 3
    assert [slot.take(), slot.take(), slot.take(), slot.take()] == [3, 4, 5, None]
