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


def _blas_threads() -> list[int]:
    import numpy  # noqa: F401  (loads numpy's BLAS)
    from threadpoolctl import threadpool_info
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] in ("blas", "openmp")]


def test_pool_workers_get_cores_over_workers_math_threads():
    """A worker process may use cores / workers BLAS/OpenMP threads, not all cores (issue 19)."""
    import os

    from webtag.parallel import run_parts, threads_per_worker
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: every worker already has one thread")
    assert max(_blas_threads()) > threads_per_worker(2)   # the parent's pools are larger
    seen = run_parts(_blas_threads, [(), ()], workers=2, desc="threads")
    assert all(n == threads_per_worker(2) for pools in seen for n in pools) and all(seen)
