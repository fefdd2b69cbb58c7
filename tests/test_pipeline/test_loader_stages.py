"""The loader's parts on their own: the sample-stream stages, BatchMeta through the loader and
its resumable state, the device prefetcher and the one evaluation loop."""
import numpy as np
import pytest
import torch

from pipeline import schema
from pipeline.loader import BadSamples, BatchMeta, DevicePrefetcher, LoaderConfig, ShardLoader, WorkerPlan, sample_stream
from pipeline.loader.stages import PASS_END, Drawn, ShardEnd, compose, repeat_by_factors, take, tracked_shuffle
from pipeline.shards import ShardConfig, shard_all
from pretrain.evaluation import model_outputs


@pytest.fixture(scope="module")
def shards(mined_v1, example_v1, tmp_path_factory):
    out = tmp_path_factory.mktemp("stages") / "s"
    shard_all(example_v1, mined_v1, out, ShardConfig(max_size=150_000), workers=1, num_parts=2)
    return out


def drawn(shard, n, padding=False):
    return [Drawn({"__key__": f"{shard}{i}"}, shard, i, padding) for i in range(n)]


def test_tracked_shuffle_reports_a_shard_when_its_last_copy_leaves():
    items = drawn("a", 3) + [ShardEnd("a")] + drawn("b", 2) + [ShardEnd("b"), PASS_END]
    out = list(tracked_shuffle(4, np.random.default_rng(0))(iter(items)))
    assert sorted(s["__key__"] for s, _, _ in out) == ["a0", "a1", "a2", "b0", "b1"]
    keys = [s["__key__"] for s, _, _ in out]
    reported = [(i, shard) for i, (_, _, done) in enumerate(out) for shard in done]
    assert sorted(shard for _, shard in reported) == ["a", "b"]      # each shard once
    for i, shard in reported:    # with the sample that was that shard's last copy in the buffer
        assert keys[i].startswith(shard) and not any(k.startswith(shard) for k in keys[i + 1:])
    # order 1 = no shuffle; padding copies never count towards a shard's completion
    items = drawn("a", 2) + [ShardEnd("a")] + drawn("a", 2, padding=True) + [PASS_END]
    out = list(tracked_shuffle(1, np.random.default_rng(0))(iter(items)))
    assert [(s["__key__"], p) for s, p, _ in out] == [("a0", False), ("a1", False), ("a0", True), ("a1", True)]
    assert [d for _, _, d in out] == [[], [], ["a"], []]


def test_pass_end_drains_the_buffer_before_padding():
    items = drawn("a", 5) + [ShardEnd("a"), PASS_END] + drawn("a", 5, padding=True) + [PASS_END]
    out = list(tracked_shuffle(100, np.random.default_rng(1))(iter(items)))
    assert [p for _, p, _ in out] == [False] * 5 + [True] * 5


def test_repeat_factors_and_take():
    rng = np.random.default_rng(0)
    factors = {"a": np.array([0.0, 2.0, 3.0])}
    out = list(compose(drawn("a", 3) + [ShardEnd("a")], repeat_by_factors(factors, rng)))
    assert [it.position for it in out if type(it) is Drawn] == [1, 1, 2, 2, 2] and out[-1] == ShardEnd("a")
    assert len(list(compose(range(100), take(7)))) == 7


def test_a_worker_without_shards_of_its_own_pads_from_others(shards):
    """A rank left without shards (fewer shards remaining than ranks after a resume) gets padding
    from the epoch's other shards: its worker's plan has no shards, only pad_from."""
    split = shards / "train"
    name = sorted(schema.read_sizes(split))[0]
    plan = WorkerPlan([], 2, [name])
    got = list(sample_stream(split, plan, 10, None, 4, np.random.default_rng(0), BadSamples(1e9)))
    assert len(got) == 10 and all(pad for _, pad, _ in got) and not any(done for _, _, done in got)


def test_batch_meta_and_state_without_in_flight_batches(shards):
    split = shards / "train"
    cfg = LoaderConfig(batch_size=8, workers=2, shuffle_buffer=8, image_size=32, seed=1)
    loader = ShardLoader(split, cfg)
    metas, n = [], len(loader)
    for batch in loader:
        meta = batch["meta"]
        assert isinstance(meta, BatchMeta) and meta.epoch == 0 and meta.padding.shape == (8,)
        assert meta.padding.dtype == torch.bool and "padding" not in batch
        metas.append(meta)
        if len(metas) == n - 1:
            break
    done = [s for m in metas for s in m.shards_done]
    assert done and len(done) == len(set(done))
    state = loader.state_dict()
    assert state == {"epoch": 0, "consumed": sorted(done)}
    held = [m for m in metas if m.shards_done][-1:]
    assert loader.state_dict(in_flight=held)["consumed"] == sorted(set(done) - set(held[0].shards_done))
    loader.close()


def test_device_prefetcher_checks_and_counts_waits(shards):
    cfg = LoaderConfig(batch_size=8, workers=1, train=False, image_size=32)
    seen = []
    pre = DevicePrefetcher(ShardLoader(shards / "val", cfg), "cpu", check=lambda b: seen.append(len(b["index"])))
    n = sum(1 for _ in pre)
    assert n == len(seen) > 0 and pre.in_flight == [] and pre.waited > 0
    assert pre.take_waited() > 0 and pre.waited == 0.0


class _Sum(torch.nn.Module):
    def forward(self, x):
        return x.float().mean(dim=(2, 3))


def test_evaluation_loop_leaves_padding_out_and_keeps_models_in_step(shards):
    split = shards / "val"
    n_real = sum(schema.read_sizes(split).values())
    cfg = LoaderConfig(batch_size=7, workers=1, train=False, image_size=32)
    model = _Sum().train()
    rows, indices = 0, []
    for (out,), batch, keep in model_outputs([model], [ShardLoader(split, cfg)], "cpu"):
        assert out.shape == (int(keep.sum()), 3)
        rows += out.shape[0]
        indices += batch["index"][keep].tolist()
    assert rows == n_real and len(set(indices)) == n_real and model.training   # mode restored
    # two models at two image sizes line up; loaders over different shards do not
    pairs = list(model_outputs([_Sum(), _Sum()], [ShardLoader(split, cfg),
                                                 ShardLoader(split, LoaderConfig(**{**cfg.__dict__, "image_size": 48}))], "cpu"))
    assert sum(a.shape[0] for (a, b), _, _ in pairs) == n_real
    other = ShardLoader(shards / "train", cfg)
    with pytest.raises(RuntimeError, match="out of step"):
        list(model_outputs([_Sum(), _Sum()], [ShardLoader(split, cfg), other], "cpu"))


def test_lazy_padding_gives_the_samples_a_full_reread_gives(shards):
    """Padding reads of a shard read in full before are its index's byte ranges, loaded only when
    drawn (stages.Unread): the stream is the one that reading the shards again gave, sample for
    sample (members and labels), and each range reads back as the sample read_shard delivered."""
    from pipeline.loader.stages import Unread, read_samples, shard_passes
    from pipeline.loader.tar import read_sample_at, read_shard
    split = shards / "train"
    names = sorted(schema.read_sizes(split))[:2]
    n = sum(schema.read_sizes(split)[s] for s in names)
    plan = WorkerPlan(names, 1, names)

    def stream(lazy):
        rng = np.random.default_rng(3)
        return list(compose(shard_passes(plan), read_samples(split, BadSamples(1e9), lazy=lazy),
                            repeat_by_factors(None, rng), tracked_shuffle(6, rng), take(n + 9)))
    lazy, full = stream(True), stream(False)
    assert len(lazy) == n + 9 and sum(pad for _, pad, _ in lazy) == 9
    assert [(s, pad, done) for s, pad, done in lazy] == [(s, pad, done) for s, pad, done in full]
    index = []
    samples = list(read_shard(split / names[0], BadSamples(1e9), index=index))
    assert len(index) == len(samples) and all(read_sample_at(split / names[0], a, b) == s
                                             for (a, b), s in zip(index, samples))
    assert Unread(split / names[0], 0, 0).load().get(schema.IMAGE_EXT) is None   # nothing there: skipped


def test_the_loader_imports_what_its_workers_need_before_they_fork():
    """numpy.random (seeded by every DataLoader worker as it starts) is imported with the loader,
    not by each worker after the fork."""
    import subprocess
    import sys
    from pathlib import Path
    code = "import sys, pipeline.loader; print('numpy.random' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "True"


def test_a_worker_keeps_freed_sample_memory_for_the_next_samples():
    """In a worker (its init function, run in a fresh interpreter) the next shuffle buffer's worth
    of large samples reuses the memory of the ones freed before: no pages faulted in afresh."""
    import subprocess
    import sys
    from pathlib import Path
    code = """if True:
        import resource, sys
        from pipeline.loader.shard_loader import _WorkerInit
        if sys.argv[1] == "worker":
            _WorkerInit(0)(0)
        def fill():
            return [bytes(200_000 + i) for i in range(300)]   # ~60 MB of 200 KB samples
        for _ in range(2):          # passes of the buffer: fill, drain
            samples = fill()
            del samples
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        samples = fill()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)"""
    repo = Path(__file__).resolve().parents[2]

    def faults(where):
        out = subprocess.run([sys.executable, "-c", code, where], capture_output=True, text=True, check=True, cwd=repo)
        return int(out.stdout)

    pages = 300 * 200_000 // 4096
    assert faults("plain") > pages // 2       # the default allocator: fresh pages again
    assert faults("worker") < pages // 20


def test_a_workers_collections_leave_the_objects_it_forked_with_untouched():
    """A full cyclic collection in a forked worker (after its init function) does not write to
    the objects inherited from the main process: no copy-on-write page faults for them."""
    import subprocess
    import sys
    from pathlib import Path
    code = """if True:
        import gc, os, resource, sys
        from pipeline.loader.shard_loader import _WorkerInit
        held = [[i] for i in range(300_000)]     # ~25 MB of tracked objects in the main process
        gc.collect()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            if sys.argv[1] == "worker":
                _WorkerInit(0)(0)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            gc.collect()
            os.write(write, str(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print(os.read(read, 64).decode())"""
    repo = Path(__file__).resolve().parents[2]

    def faults(where):
        out = subprocess.run([sys.executable, "-c", code, where], capture_output=True, text=True, check=True, cwd=repo)
        return int(out.stdout)

    pages = 300_000 * 80 // 4096            # a list and its int: ~80 bytes of GC-tracked memory each
    assert faults("plain") > pages // 2      # the collection wrote to every inherited object
    assert faults("worker") < pages // 20
