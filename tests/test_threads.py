"""torch's threads follow the CPU work in flight: the rule, and where it is re-decided."""

from __future__ import annotations

import os
import threading

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlaif.rollout.threads import (
    ThreadPolicy,
    _malloc_trim,
    _transformer_layers,
    release_free_memory,
)


def test_torch_gets_the_cores_the_running_jobs_leave_and_a_fixed_count_wins():
    running = [0]
    policy = ThreadPolicy(4, lambda: running[0])
    assert policy.threads() == 4
    running[0] = 3
    assert policy.threads() == 1
    running[0] = 9  # more jobs than cores: still one thread
    assert policy.threads() == 1
    assert ThreadPolicy(4, lambda: 3, fixed=2).threads() == 2


def test_the_update_re_decides_before_every_layer_forward_and_backward(tiny_model_dir):
    """A micro-batch takes seconds and a rustc job under one: deciding once per micro-batch
    ran it on the cores a job held at its first instant. Here the jobs change between layers."""

    def run_on_fresh_thread():
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        layers = len(_transformer_layers(model))
        asked = {"forward": 0, "backward": 0}
        phase = ["forward"]

        def busy() -> int:
            asked[phase[0]] += 1
            return 1 if phase[0] == "backward" else 0  # a rustc job starts as backward does

        policy = ThreadPolicy(2, busy)
        ids = torch.tensor([[1, 2, 3, 4, 5]])
        with policy.per_layer(model, "train"):
            loss = model(ids, labels=ids).loss
            assert torch.get_num_threads() == 2  # no job during the forward: both cores
            phase[0] = "backward"
            loss.backward()
            in_backward = torch.get_num_threads()  # the count the backward last chose
        after_exit = dict(asked)
        model(ids)  # the hooks are gone: no more decisions
        return layers, after_exit, asked, in_backward, policy.mean("train")

    result = {}
    worker = threading.Thread(target=lambda: result.update(out=run_on_fresh_thread()))
    worker.start()
    worker.join()
    layers, after_exit, asked, in_backward, mean = result["out"]
    assert layers == 2  # the tiny model's decoder blocks
    assert after_exit == {"forward": layers, "backward": layers} == asked
    assert in_backward == 1  # set on the thread that ran the backward, as autograd's CPU path is
    assert mean == 1.5  # half the decisions with both cores, half with one


def test_a_model_without_layers_keeps_the_callers_decisions():
    policy = ThreadPolicy(2, lambda: 0)
    model = torch.nn.Linear(3, 3)
    with policy.per_layer(model, "train"):
        model(torch.ones(1, 3)).sum().backward()
    assert policy.mean("train") is None  # nothing decided inside


def resident_bytes() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(_malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_memory_freed_between_live_blocks_goes_back_to_the_system():
    """What the freed blocks of a step leave: free memory between live blocks, which glibc's free
    never returns (only the top of a heap). 64 KiB blocks stay below its mmap threshold, so they
    live in the heap like torch's smaller tensors; every other one stays alive."""
    blocks = [bytearray(64 * 1024) for _ in range(4096)]  # 256 MiB
    for block in blocks:
        block[::4096] = b"\x01" * 16  # touch every page, so it is resident
    alive = blocks[::2]
    del blocks
    held = resident_bytes()
    assert release_free_memory()
    released = held - resident_bytes()
    assert released > 64 * 2**20, f"only {released / 2**20:.0f} MiB of 128 MiB freed came back"
    assert len(alive) == 2048
