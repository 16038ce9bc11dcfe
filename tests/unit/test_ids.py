from eventstore.ids import uuid4


def test_block_drawn_uuids_are_random_version_4_and_distinct() -> None:
    drawn = [uuid4() for _ in range(2_000)]  # crosses several blocks
    assert len(set(drawn)) == len(drawn)
    assert {u.version for u in drawn} == {4} and {u.variant for u in drawn} == {
        "specified in RFC 4122"
    }
