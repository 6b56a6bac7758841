"""MANN and SNAIL: the episode as a sequence, LRUA memory by hand, causality, learning, errors."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from envs.supervised import TaskBatch
from metarl.algorithms import build_supervised_learner
from metarl.algorithms.blackbox_common import (
    episode_sequences,
    instance_index,
    support_orders,
    whole_episodes,
)
from metarl.algorithms.mann import LRUAState, MANNCore, lrua_step
from metarl.algorithms.snail import SNAILCore, TCBlock, causal_attention
from metarl.algorithms.supervised import (
    AlgoConfig,
    ModelConfig,
    SupervisedConfig,
    TaskConfig,
    embed_tasks,
)
from metarl.algorithms.supervised_config import MANNConfig, ProtoNetConfig, SNAILConfig

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[3]
SMALL = {
    "mann": {"mann": MANNConfig(controller_size=16, memory_slots=8, memory_width=8, read_heads=2)},
    "snail": {"snail": SNAILConfig((8, 16), (8, 16), 8)},
}


def _config(name: str, ways: int = 3, shots: int = 1, **task: object) -> SupervisedConfig:
    fields = {"family": "omniglot", "ways": ways, "shots": shots, "query_shots": 2, **task}
    return SupervisedConfig(
        task=TaskConfig(**fields),  # type: ignore[arg-type]
        model=ModelConfig(network="conv4_maxpool", filters=8),
        algo=AlgoConfig(name=name),
        **SMALL[name],  # type: ignore[arg-type]
    )


def _learner(cfg: SupervisedConfig, seed: int = 0):
    return build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(seed))


def _prototype_batch(
    gen: torch.Generator, tasks: int, ways: int, shots: int, query: int
) -> TaskBatch:
    """Each task: ``ways`` random binary 28x28 images, its classes; every example is a copy."""
    protos = (torch.rand(tasks, ways, 1, 28, 28, generator=gen) > 0.5).float()
    labels = torch.arange(ways)
    return TaskBatch(
        support_x=protos.repeat_interleave(shots, 1),
        support_y=labels.repeat_interleave(shots).repeat(tasks, 1),
        query_x=protos.repeat_interleave(query, 1),
        query_y=labels.repeat_interleave(query).repeat(tasks, 1),
    )


# --- the episode as a sequence ----------


def test_episode_sequences_known_answer() -> None:
    support = torch.tensor([[[10.0], [11.0], [12.0]]])  # one task, 3 support, dim 1
    labels = torch.tensor([[0, 1, 1]])
    query = torch.tensor([[[20.0], [21.0]]])
    order = torch.tensor([[2, 0, 1]])  # the sequence reads support 2, 0, 1
    own = episode_sequences(support, labels, query, 2, order, label_offset=False)
    expected_x = torch.tensor([12.0, 10.0, 11.0])
    assert own.shape == (2, 4, 3)
    for q in range(2):
        assert_close(own[q, :3, 0], expected_x)
        assert own[q, 3, 0] == 20.0 + q
        assert_close(own[q, :, 1:], torch.tensor([[0.0, 1], [1, 0], [0, 1], [0, 0]]))
    offset = episode_sequences(support, labels, query, 2, order, label_offset=True)
    assert_close(offset[:, :, 0], own[:, :, 0])
    # Santoro et al.: step t carries y_{t-1}; zeros first, the query carries the last support label
    assert_close(offset[0, :, 1:], torch.tensor([[0.0, 0], [0, 1], [1, 0], [0, 1]]))


def test_support_orders_are_per_task_permutations_and_seeded() -> None:
    order = support_orders(50, 6, seed=3, device=CPU)
    assert_close(order.sort(dim=1).values, torch.arange(6).repeat(50, 1))
    assert torch.equal(order, support_orders(50, 6, seed=3, device=CPU))
    assert len({tuple(row.tolist()) for row in order}) > 10


def test_episode_sequences_rejects_bad_inputs() -> None:
    s, q = torch.zeros(2, 3, 4), torch.zeros(2, 1, 4)
    y = o = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="query_emb must be"):
        episode_sequences(s, y, torch.zeros(2, 1, 5), 2, o, True)
    with pytest.raises(ValueError, match="support_y and order must be"):
        episode_sequences(s, y[:, :2], q, 2, o, True)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        episode_sequences(s, y + 2, q, 2, o, True)
    with pytest.raises(ValueError, match=r"\[task, n, dim\]"):
        episode_sequences(s[0], y, q, 2, o, True)


def test_whole_episodes_known_answer() -> None:
    support = torch.tensor([[[10.0], [11.0]]])  # one task, 2 support, 2 query, dim 1
    query = torch.tensor([[[20.0], [21.0]]])
    s_y, q_y = torch.tensor([[0, 1]]), torch.tensor([[1, 0]])
    order = torch.tensor([[3, 0, 2, 1]])  # query 1, support 0, query 0, support 1
    seq, y = whole_episodes(support, s_y, query, q_y, 2, order)
    assert seq.shape == (1, 4, 3)
    assert_close(seq[0, :, 0], torch.tensor([21.0, 10.0, 20.0, 11.0]))
    assert y.tolist() == [[0, 0, 1, 1]]
    # step t carries y_{t-1}, zeros first
    assert_close(seq[0, :, 1:], torch.tensor([[0.0, 0], [1, 0], [1, 0], [0, 1]]))
    assert instance_index(y, 2).tolist() == [[0, 1, 0, 1]]
    assert instance_index(torch.tensor([[2, 2, 0, 2, 0]]), 3).tolist() == [[0, 1, 0, 2, 1]]


def test_whole_episodes_rejects_bad_inputs() -> None:
    s, q = torch.zeros(2, 3, 4), torch.zeros(2, 1, 4)
    s_y, q_y = torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 1, dtype=torch.int64)
    o = torch.arange(4).repeat(2, 1)
    with pytest.raises(ValueError, match="same task and dim"):
        whole_episodes(s, s_y, torch.zeros(2, 1, 5), q_y, 2, o)
    with pytest.raises(ValueError, match="matching the embeddings and order"):
        whole_episodes(s, s_y, q, q_y, 2, o[:, :3])
    with pytest.raises(ValueError, match="matching the embeddings and order"):
        whole_episodes(s, s_y[:, :2], q, q_y, 2, o)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        whole_episodes(s, s_y, q, q_y + 2, 2, o)


# --- LRUA memory against a hand computation ----------


def test_lrua_write_then_read_by_hand() -> None:
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    usage = torch.tensor([[0.5, 0.1, 0.3]])
    prev_read = torch.tensor([[[0.2, 0.5, 0.3]]])
    key = torch.tensor([[[1.0, 2.0]]])
    state, reads = lrua_step(LRUAState(memory, usage, prev_read), key, torch.zeros(1, 1), 0.9)
    # read weights against the memory before the write: cos(k, M_{t-1}(i))
    norm_k = math.sqrt(5.0)
    cos = [1.0 / norm_k, 2.0 / norm_k, 3.0 / (norm_k * math.sqrt(2.0))]
    total = sum(math.exp(c) for c in cos)
    read = [math.exp(c) / total for c in cos]
    assert_close(state.read_weights[0, 0], torch.tensor(read))
    # slot 1 is least used: zeroed, and w^lu = [0, 1, 0]; sigma(0) = 0.5
    write = [0.5 * 0.2, 0.5 * 0.5 + 0.5, 0.5 * 0.3]  # [0.1, 0.75, 0.15]
    new_memory = [[1.1, 0.2], [0.75, 1.5], [1.15, 1.3]]  # M + w^w k^T after zeroing slot 1
    assert_close(state.memory[0], torch.tensor(new_memory))
    # the read itself is from the memory after the write
    expected_reads = [sum(read[i] * new_memory[i][d] for i in range(3)) for d in range(2)]
    assert_close(reads[0, 0], torch.tensor(expected_reads))
    expected_usage = [0.9 * u + r + w for u, r, w in zip([0.5, 0.1, 0.3], read, write, strict=True)]
    assert_close(state.usage[0], torch.tensor(expected_usage))
    # a separate written vector goes where the key went, the addressing is unchanged
    written = torch.tensor([[[-1.0, 3.0]]])
    other, _ = lrua_step(LRUAState(memory, usage, prev_read), key, torch.zeros(1, 1), 0.9, written)
    zeroed = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert_close(other.memory[0], zeroed + torch.tensor(write)[:, None] * written[0])
    assert_close(other.read_weights, state.read_weights)


def test_lrua_two_heads_write_to_the_two_least_used_slots_ties_by_index() -> None:
    memory = torch.ones(1, 4, 2)
    usage = torch.tensor([[0.3, 0.1, 0.2, 0.1]])  # least used: slots 1 and 3 (tie: index order)
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    gate = torch.full((1, 2), -100.0)  # sigma -> 0: write on w^lu only
    state, _ = lrua_step(LRUAState(memory, usage, torch.zeros(1, 2, 4)), keys, gate, 1.0)
    # slot 1 is zeroed first, then both heads add their key to slots 1 and 3
    expected = torch.tensor([[1.0, 1.0], [1.0, 2.0], [1.0, 1.0], [2.0, 3.0]])
    assert_close(state.memory[0], expected)


def test_lrua_rejects_bad_shapes() -> None:
    state = LRUAState(torch.zeros(1, 3, 2), torch.zeros(1, 3), torch.zeros(1, 1, 3))
    with pytest.raises(ValueError, match="keys must be"):
        lrua_step(state, torch.zeros(1, 1, 5), torch.zeros(1, 1), 0.9)
    with pytest.raises(ValueError, match="written must be"):
        lrua_step(state, torch.zeros(1, 1, 2), torch.zeros(1, 1), 0.9, torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="must be <= memory slots"):
        lrua_step(state, torch.zeros(1, 4, 2), torch.zeros(1, 4), 0.9)
    with pytest.raises(ValueError, match="gate_logits must be"):
        lrua_step(state, torch.zeros(1, 1, 2), torch.zeros(1, 2), 0.9)


# --- causality: a later step never changes an earlier output ----------


def _mann_core() -> torch.nn.Module:
    torch.manual_seed(0)
    return MANNCore(5, 3, controller=8, slots=4, width=3, heads=2, gamma=0.95)


def _snail_core() -> torch.nn.Module:
    torch.manual_seed(0)
    return SNAILCore(5, 3, steps=7, keys=(4, 6), values=(3, 5), tc_filters=4)


def _tc_block() -> torch.nn.Module:
    torch.manual_seed(0)
    return TCBlock(5, 7, 4)


@pytest.mark.parametrize("build", [_mann_core, _snail_core, _tc_block])
@pytest.mark.parametrize("changed", [0, 3, 6])
def test_sequence_models_are_causal(build, changed: int) -> None:
    model = build()
    seq = torch.randn(2, 7, 5, generator=torch.Generator().manual_seed(1))
    other = seq.clone()
    other[:, changed] += 1.0
    with torch.no_grad():
        before, after = model(seq), model(other)
    assert torch.equal(before[:, :changed], after[:, :changed])
    assert not torch.allclose(before[:, changed], after[:, changed])


def test_causal_attention_known_answer() -> None:
    q = torch.tensor([[[1.0], [1.0]]])
    k = torch.tensor([[[0.0], [2.0]]])
    v = torch.tensor([[[3.0], [5.0]]])
    out = causal_attention(q, k, v)
    assert out[0, 0, 0] == 3.0  # the first step sees only itself
    p = 1 / (1 + math.exp(2.0))  # softmax([0, 2])[0], K = 1
    assert_close(out[0, 1, 0], torch.tensor(3.0 * p + 5.0 * (1 - p)))


# --- the learners ----------


@pytest.mark.parametrize("name", ["mann", "snail"])
def test_outer_loss_reaches_every_parameter_and_the_curve_is_query_accuracy(name: str) -> None:
    learner = _learner(_config(name))
    params = learner.init_params()
    batch = _prototype_batch(torch.Generator().manual_seed(0), 3, 3, 1, 2)
    out = learner.outer_loss(params, batch, 0)
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in params.values())
    curve = learner.adaptation_curve(params, batch, 5)
    assert curve.shape == (3, 1) and not curve.requires_grad
    assert ((curve * 6).round() == curve * 6).all() and (0 <= curve).all() and (curve <= 1).all()
    with pytest.raises(ValueError, match="steps must be >= 0"):
        learner.adaptation_curve(params, batch, -1)


@pytest.mark.parametrize("name", ["mann", "snail"])
def test_flat_network_feeds_the_raw_pixels_to_the_sequence_model(name: str) -> None:
    cfg = dataclasses.replace(_config(name), model=ModelConfig(network="flat"))
    learner = _learner(cfg)
    params = learner.init_params()
    assert params and all(k.startswith("core.") for k in params)  # nothing learned before it
    batch = _prototype_batch(torch.Generator().manual_seed(0), 2, 3, 1, 2)
    support, query = embed_tasks(learner.net["embedding"], {}, batch)
    assert_close(support, batch.support_x.flatten(2))
    assert_close(query, batch.query_x.flatten(2))
    out = learner.outer_loss(params, batch, 0)
    out.loss.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in params.values())


def test_flat_network_is_refused_for_learners_that_need_a_network() -> None:
    from metarl.algorithms.supervised_checks import preflight

    cfg = SupervisedConfig(
        task=TaskConfig(family="omniglot", ways=5, shots=1),
        model=ModelConfig(network="flat"),
        algo=AlgoConfig(name="maml"),
    )
    with pytest.raises(
        ValueError, match=r"model.network='flat' .* for mann and snail only, not maml"
    ):
        preflight(cfg, CPU)


def test_mann_separate_write_vector_gets_its_own_trained_parameters() -> None:
    separate = dataclasses.replace(SMALL["mann"]["mann"], write_vector="separate")
    cfg = _config("mann")
    learner = build_supervised_learner(
        SupervisedConfig(task=cfg.task, model=cfg.model, algo=cfg.algo, mann=separate),
        CPU,
        torch.Generator().manual_seed(0),
    )
    params = learner.init_params()
    assert {"core.write.weight", "core.write.bias"} <= set(params)
    assert "core.write.weight" not in _learner(cfg).init_params()
    batch = _prototype_batch(torch.Generator().manual_seed(0), 3, 3, 1, 2)
    learner.outer_loss(params, batch, 0).loss.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in params.values())


def _prefixed(params: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}


def _every_step_mann(ways: int = 3, shots: int = 1, query: int = 2):
    every = dataclasses.replace(SMALL["mann"]["mann"], train_loss="every_step")
    cfg = _config("mann", ways=ways, shots=shots, query_shots=query)
    return build_supervised_learner(
        SupervisedConfig(task=cfg.task, model=cfg.model, algo=cfg.algo, mann=every),
        CPU,
        torch.Generator().manual_seed(0),
    )


def test_mann_every_step_loss_is_the_mean_over_the_whole_episode() -> None:
    """Santoro et al.'s episodes: one sequence per task holding every drawing, support and query
    alike, with the loss at every step; the metrics are the accuracy from a class's second
    drawing on and at its second drawing, by hand from the logits."""
    learner = _every_step_mann()
    params = learner.init_params()
    batch = _prototype_batch(torch.Generator().manual_seed(0), 4, 3, 1, 2)
    out = learner.outer_loss(params, batch, 7)
    out.loss.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in params.values())
    # by hand: the same sequences through the core
    support, query = embed_tasks(learner.net["embedding"], _prefixed(params, "embedding."), batch)
    order = support_orders(4, 9, learner.cfg.run.seed * 1_000_003 + 7, CPU)
    seq, y = whole_episodes(support, batch.support_y, query, batch.query_y, 3, order)
    assert seq.shape == (4, 9, support.shape[-1] + 3)
    logits = torch.func.functional_call(learner.net["core"], _prefixed(params, "core."), (seq,))
    assert_close(out.loss, torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()))
    correct = (logits.argmax(-1) == y).float()
    seen = instance_index(y, 3)
    assert_close(out.metrics["query_accuracy"], correct[seen > 0].mean())
    assert_close(out.metrics["second_instance_accuracy"], correct[seen == 1].mean())
    # evaluation reads the support, then each query, as with the query loss
    query_learner = _learner(_config("mann", query_shots=2))
    query_learner.net.load_state_dict(learner.net.state_dict())
    assert torch.equal(
        learner.adaptation_curve(params, batch, 0), query_learner.adaptation_curve(params, batch, 0)
    )


def test_instance_accuracy_is_the_whole_episode_accuracy_by_drawing() -> None:
    """Santoro et al.'s evaluation: accuracy at each class's 1st, 2nd, ... drawing; the 2nd
    drawing's column over the tasks equals the training metric on the same episodes."""
    learner = _every_step_mann()
    params = learner.init_params()
    batch = _prototype_batch(torch.Generator().manual_seed(0), 4, 3, 1, 2)
    curves = learner.instance_accuracy(params, batch, 7)
    assert curves.shape == (4, 3) and not curves.requires_grad
    assert ((curves * 3).round() == curves * 3).all()  # 3 classes: multiples of 1/3
    metric = learner.outer_loss(params, batch, 7).metrics["second_instance_accuracy"]
    assert_close(curves[:, 1].mean(), metric)
    assert_close(
        curves[:, 1:].mean(), learner.outer_loss(params, batch, 7).metrics["query_accuracy"]
    )
    uneven = dataclasses.replace(batch, query_y=batch.query_y.roll(1, dims=1))
    uneven.query_y[:, 0] = 0
    with pytest.raises(ValueError, match="same number of drawings"):
        learner.instance_accuracy(params, uneven, 7)
    snail = _learner(_config("snail"))
    with pytest.raises(ValueError, match="snail reads each step's own label"):
        snail.instance_accuracy(snail.init_params(), batch, 7)


def test_mann_every_step_learns_on_random_vectors() -> None:
    """3-way, three drawings per class, the loss at every step: 600 Adam steps lift the accuracy
    at a class's later drawings on held-out episodes from chance (1/3) past 0.75. Without the
    memory the best is about 0.5 (guessing a class with drawings left, from the labels seen:
    where this run sits for its first few hundred steps, and where it stays with lr 3e-3 for
    1,000)."""
    torch.manual_seed(0)
    core = MANNCore(8 + 3, 3, controller=32, slots=8, width=8, heads=1, gamma=0.95)
    opt = torch.optim.Adam(core.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)

    def episodes(gen: torch.Generator, tasks: int):
        protos = torch.randn(tasks, 3, 8, generator=gen)
        labels = torch.arange(3).repeat(tasks, 3)
        x = protos.repeat(1, 3, 1) + 0.1 * torch.randn(tasks, 9, 8, generator=gen)
        seed = int(torch.randint(0, 2**31, (1,), generator=gen))
        order = support_orders(tasks, 9, seed, CPU)
        return whole_episodes(x[:, :6], labels[:, :6], x[:, 6:], labels[:, 6:], 3, order)

    test_seq, test_y = episodes(torch.Generator().manual_seed(2), 300)
    later = instance_index(test_y, 3) > 0

    def accuracy() -> float:
        with torch.no_grad():
            return (core(test_seq).argmax(-1) == test_y)[later].float().mean().item()

    before = accuracy()
    for _ in range(600):
        seq, labels = episodes(gen, 32)
        loss = torch.nn.functional.cross_entropy(core(seq).flatten(0, 1), labels.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert before < 0.45 and after > 0.75, (before, after)


@pytest.mark.parametrize("name", ["mann", "snail"])
def test_init_is_seeded_and_a_query_never_sees_another(name: str) -> None:
    cfg = _config(name)
    first, again = _learner(cfg).init_params(), _learner(cfg).init_params()
    assert all(torch.equal(first[k], again[k]) for k in first)
    learner = _learner(cfg)
    core = {k[len("core.") :]: v for k, v in first.items() if k.startswith("core.")}
    gen = torch.Generator().manual_seed(0)
    support, query = torch.randn(2, 3, 8, generator=gen), torch.randn(2, 4, 8, generator=gen)
    labels, order = torch.tensor([[0, 1, 2], [2, 0, 1]]), support_orders(2, 3, 0, CPU)
    offset = learner.label_offset
    with torch.no_grad():
        all_queries = torch.func.functional_call(
            learner.net["core"],
            core,
            (episode_sequences(support, labels, query, 3, order, offset),),
        )
        only_first = torch.func.functional_call(
            learner.net["core"],
            core,
            (episode_sequences(support, labels, query[:, :1], 3, order, offset),),
        )
    assert_close(all_queries.view(2, 4, 4, 3)[:, 0], only_first)  # rows are task-major


def test_snail_learns_in_context_on_random_prototypes() -> None:
    """3-way 1-shot, each class a random binary image: 150 Adam steps lift accuracy over 1/3."""
    torch.manual_seed(0)
    learner = _learner(_config("snail"))
    params = learner.init_params()
    opt = torch.optim.Adam(params.values(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    test = _prototype_batch(torch.Generator().manual_seed(2), 50, 3, 1, 2)
    before = learner.adaptation_curve(params, test, 0).mean().item()
    for i in range(150):
        out = learner.outer_loss(params, _prototype_batch(gen, 8, 3, 1, 2), i)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    after = learner.adaptation_curve(params, test, 0).mean().item()
    assert before < 0.45 and after > 0.6, (before, after)


def _vector_episodes(gen: torch.Generator, tasks: int, ways: int, dim: int):
    """Each task: ``ways`` random Gaussian vectors, one per class; the query is a copy of one."""
    protos = torch.randn(tasks, ways, dim, generator=gen)
    labels = torch.arange(ways).repeat(tasks, 1)
    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
    order = support_orders(tasks, ways, seed, CPU)
    return episode_sequences(protos, labels, protos, ways, order, True), labels.flatten()


def test_mann_learns_in_context_on_random_vectors() -> None:
    """2-way 1-shot on (x, previous label) sequences of random vectors: 350 Adam steps of the
    controller and memory lift held-out accuracy from chance (1/2) to nearly perfect."""
    torch.manual_seed(0)
    core = MANNCore(8 + 2, 2, controller=32, slots=4, width=8, heads=1, gamma=0.95)
    opt = torch.optim.Adam(core.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    test_seq, test_y = _vector_episodes(torch.Generator().manual_seed(2), 200, 2, 8)

    def accuracy() -> float:
        with torch.no_grad():
            return (core(test_seq)[:, -1].argmax(-1) == test_y).float().mean().item()

    before = accuracy()
    for _ in range(350):
        seq, labels = _vector_episodes(gen, 32, 2, 8)
        loss = torch.nn.functional.cross_entropy(core(seq)[:, -1], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert before < 0.65 and after > 0.85, (before, after)


# --- bad configs ----------


@pytest.mark.parametrize("name", ["mann", "snail"])
def test_bad_configs_raise(name: str) -> None:
    with pytest.raises(ValueError, match="classification task family"):
        _learner(
            SupervisedConfig(algo=AlgoConfig(name=name), **SMALL[name])  # type: ignore[arg-type]
        )
    cfg = _config(name)
    with pytest.raises(ValueError, match="model.network conv4"):
        _learner(SupervisedConfig(task=cfg.task, algo=cfg.algo, **SMALL[name]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_ways must be null or equal"):
        _learner(_config(name, train_ways=5))
    with pytest.raises(ValueError, match="protonet section does not apply"):
        SupervisedConfig(task=cfg.task, algo=cfg.algo, protonet=ProtoNetConfig())


def test_bad_sections_raise() -> None:
    with pytest.raises(ValueError, match="controller_size"):
        MANNConfig(controller_size=0)
    with pytest.raises(ValueError, match="read_heads"):
        MANNConfig(memory_slots=2, read_heads=3)
    with pytest.raises(ValueError, match="usage_decay"):
        MANNConfig(usage_decay=1.5)
    with pytest.raises(ValueError, match="write_vector must be"):
        MANNConfig(write_vector="value")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_loss must be 'query' or 'every_step'"):
        MANNConfig(train_loss="every")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equally many"):
        SNAILConfig(attention_keys=(4, 4), attention_values=(4,))
    with pytest.raises(ValueError, match="tc_filters"):
        SNAILConfig(tc_filters=0)
    with pytest.raises(ValueError, match="mann section does not apply"):
        SupervisedConfig(algo=AlgoConfig(name="snail"), mann=MANNConfig())


def test_every_blackbox_learner_has_configs() -> None:
    shipped = {str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").glob("*/*.yaml")}
    for name in ("mann", "snail"):
        assert {f"{name}/omniglot_5w1s.yaml", f"{name}/omniglot_5w5s.yaml"} <= shipped
