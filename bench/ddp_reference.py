#!/usr/bin/python3
"""PyTorch DDP (gloo) reference for hdge-torch's data-parallel benchmark rows: the training loop of
reference.py's mode "train" (same WideResNet, HDGE objective, Adam, loader and transforms, imported
from reference.py beside this file) wrapped in DistributedDataParallel over the gloo backend.

    /usr/bin/python3 -m torch.distributed.run --nproc-per-node 2 ddp_reference.py --config '{...}'
    /usr/bin/python3 ddp_reference.py --spawn 2 --config '{...}'      # same, started by this script

--spawn N starts N processes on 127.0.0.1 with a free port (torch.multiprocessing); without it the
torchrun environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) is read. Debian bookworm's
torch.distributed.run (1.13 on Python 3.11) fails before starting any worker (its Std.from_str
returns None under 3.11's enums), so use --spawn there; a newer torchrun works as shown. cfg["batch"] is the batch
of each process; a DistributedSampler gives each rank its share of the shuffled data. Rank 0 prints
one JSON object: the step times, global images/s, and allreduce_s, the time of an all-reduce of the
model's gradients alone in DDP's 25 MB buckets (what the Go side's BenchmarkAllReduceWRN measures),
each step timed after a barrier.
"""
import argparse
import json
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402  (the model, objective, data and transforms)

BUCKET_BYTES = 25 << 20


def allreduce_time(model, world, reps):
    """Seconds per all-reduce of every gradient, flattened into 25 MB buckets as DDP's reducer does."""
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    buckets, cur, size = [], [], 0
    for g in grads:
        b = g.numel() * g.element_size()
        if cur and size + b > BUCKET_BYTES:
            buckets.append(cur)
            cur, size = [], 0
        cur.append(g)
        size += b
    if cur:
        buckets.append(cur)
    flats = [torch.cat([g.reshape(-1) for g in b]) for b in buckets]
    times = []
    for i in range(reps + 2):
        dist.barrier()
        t0 = time.perf_counter()
        works = [dist.all_reduce(f.div_(world), async_op=True) for f in flats]
        for w in works:
            w.wait()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return times, len(flats)


def run(cfg):
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(int(cfg.get("threads", 1)))
    images, labels = reference.load_dataset(cfg["dataset"])
    classes = int(cfg.get("classes") or labels.max() + 1)
    torch.manual_seed(cfg.get("seed", 1))
    model = reference.build_model(cfg, classes, images.shape[1], torch.device("cpu"))
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=25)
    optim = reference.adam(ddp, cfg.get("lr", 1e-4))
    objective = reference.Objective(cfg, classes, torch.device("cpu"))
    aug = cfg["augment"]
    ds = reference.TransformedSet(images, labels, aug["crop"], aug["flip"], aug["noise"])
    sampler = torch.utils.data.distributed.DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True,
                                                              seed=cfg.get("seed", 1), drop_last=True)
    workers = cfg.get("workers", 2)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg["batch"], sampler=sampler, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            for b in loader:
                yield b
            epoch += 1

    it = batches()
    steps_total = cfg["warmup_steps"] + cfg["steps"]
    times, waits, values = [], [], {}
    dist.barrier()
    for step in range(steps_total):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        # The HDGE queue holds every rank's logits, as MoCo's concat_all_gather gives them.
        logits = ddp(x)
        loss, terms = objective(logits, y) if objective.queue is None else hdge_loss(objective, logits, y, world)
        values = {"loss": loss.item()}
        optim.zero_grad()
        loss.backward()
        optim.step()
        t2 = time.perf_counter()
        if step >= cfg["warmup_steps"]:
            times.append(t2 - t0)
            waits.append(t1 - t0)
    ar, nbuckets = allreduce_time(model, world, int(cfg.get("allreduce_reps", 10)))
    # Each rank's mean step; the slowest rank sets the pace of all.
    mean = torch.tensor([sum(times) / max(len(times), 1)], dtype=torch.float64)
    dist.all_reduce(mean, op=dist.ReduceOp.MAX)
    out = {"step_s": times, "wait_s": waits, "slowest_mean_step_s": mean.item(), "world": world,
           "batch_per_process": cfg["batch"], "global_img_s": world * cfg["batch"] / mean.item(),
           "allreduce_s": ar, "buckets": nbuckets, "final": values, "threads": torch.get_num_threads(),
           "torch": torch.__version__}
    if rank == 0:
        print(json.dumps(reference.finite(out)), flush=True)


def hdge_loss(objective, logits, y, world):
    """The HDGE loss with the queue filled from every rank's detached logits in rank order."""
    dist_y = reference.smooth_one_hot(y, objective.classes)
    ce = reference.khot_cross_entropy(logits, dist_y)
    q = objective.queue
    out, target = q.joint(logits, dist_y, evaluation=True)
    gen = torch.nn.CrossEntropyLoss()(out, target)
    gathered = [torch.empty_like(logits) for _ in range(world)]
    dist.all_gather(gathered, logits.detach().contiguous())
    q._dequeue_and_enqueue(torch.cat(gathered))
    return objective.alpha * ce + (1 - objective.alpha) * gen, {"ce": ce, "gen": gen}


def worker(rank, world, port, cfg):
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world)})
    main_worker(cfg)


def main_worker(cfg):
    dist.init_process_group("gloo")
    try:
        run(cfg)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the run's configuration as a JSON object (reference.py's train mode)")
    p.add_argument("--spawn", type=int, default=0, help="start this many processes on 127.0.0.1 instead of reading torchrun's environment")
    args = p.parse_args()
    try:
        cfg = json.loads(args.config)
    except json.JSONDecodeError as e:
        sys.exit(f"--config: not JSON: {e}")
    if args.spawn > 0:
        mp.spawn(worker, args=(args.spawn, free_port(), cfg), nprocs=args.spawn, join=True)
    elif "RANK" in os.environ:
        main_worker(cfg)
    else:
        sys.exit("no torchrun environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): run under "
                 "python3 -m torch.distributed.run, or pass --spawn N")


if __name__ == "__main__":
    main()
