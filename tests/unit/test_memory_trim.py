from router.memory_trim import BurstTrimmer, find_malloc_trim


def test_trims_once_when_a_big_burst_ends() -> None:
    calls: list[int] = []
    trimmer = BurstTrimmer(burst=3, trim=lambda pad: calls.append(pad) or 1)
    for _ in range(2):
        trimmer.started()
    for _ in range(2):
        trimmer.finished()
    assert calls == []  # a small burst: nothing to give back
    for _ in range(3):
        trimmer.started()
    trimmer.finished()
    trimmer.finished()
    assert calls == []  # still one in flight
    trimmer.finished()
    assert calls == [0] and trimmer.trims == 1


def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = find_malloc_trim()
    assert trim is not None  # the project's machines run glibc
    assert trim(0) in (0, 1)
