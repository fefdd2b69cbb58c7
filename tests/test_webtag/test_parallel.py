import pytest

from webtag.parallel import part_range


@pytest.mark.parametrize("n, parts", [(0, 1), (1, 3), (10, 3), (17, 5), (5, 5)])
def test_parts_partition_the_range_in_order(n, parts):
    ranges = [part_range(n, p, parts) for p in range(parts)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    sizes = [hi - lo for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("part, parts", [(3, 3), (-1, 3), (0, 0)])
def test_part_outside_the_parts_is_an_error(part, parts):
    with pytest.raises(ValueError, match="is not in"):
        part_range(10, part, parts)
