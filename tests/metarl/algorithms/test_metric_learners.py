"""Prototypical, Matching (with and without FCE) and Relation Networks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F
from torch.testing import assert_close

from envs.supervised import TaskBatch
from metarl.algorithms import build_supervised_learner
from metarl.algorithms.matching import (
    attention_class_probs,
    cosine_attention,
    fce_query,
    fce_support,
    matching_log_probs,
)
from metarl.algorithms.protonet import prototype_logits
from metarl.algorithms.relation import class_feature_sums, relation_pairs
from metarl.algorithms.supervised import (
    AlgoConfig,
    MatchingConfig,
    ModelConfig,
    OptimConfig,
    SupervisedConfig,
    TaskConfig,
    adaptation_curves,
    build_family,
    train,
)
from metarl.config import RunConfig, load_config
from metarl.runs import open_run
from tests.helpers.data import require_omniglot_root

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[3]
VARIANTS = {
    "protonet": {"algo": AlgoConfig(name="protonet")},
    "matching": {"algo": AlgoConfig(name="matching")},
    "matching_fce": {
        "algo": AlgoConfig(name="matching"),
        "matching": MatchingConfig(full_context_embeddings=True, fce_steps=2),
    },
    "relation": {"algo": AlgoConfig(name="relation")},
}
SCORES = {"protonet": "query_logits", "matching": "query_log_probs", "relation": "relation_scores"}


def _config(variant: str, **task: object) -> SupervisedConfig:
    task_fields = {"family": "omniglot", "ways": 3, "shots": 2, "query_shots": 2, **task}
    return SupervisedConfig(
        task=TaskConfig(**task_fields),  # type: ignore[arg-type]
        model=ModelConfig(network="conv4_maxpool", filters=8),
        **VARIANTS[variant],  # type: ignore[arg-type]
    )


def _learner(cfg: SupervisedConfig, seed: int = 0):
    return build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(seed))


def _scores(learner, params, batch: TaskBatch, ways: int) -> torch.Tensor:
    return getattr(learner, SCORES[learner.cfg.algo.name])(params, batch, ways)


def _random_batch(tasks: int, ways: int, shots: int, query: int, seed: int = 0) -> TaskBatch:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways)
    return TaskBatch(
        support_x=torch.rand(tasks, ways * shots, 1, 28, 28, generator=gen),
        support_y=labels.repeat_interleave(shots).repeat(tasks, 1),
        query_x=torch.rand(tasks, ways * query, 1, 28, 28, generator=gen),
        query_y=labels.repeat_interleave(query).repeat(tasks, 1),
    )


def _task(batch: TaskBatch, t: int) -> TaskBatch:
    return TaskBatch(
        batch.support_x[t : t + 1],
        batch.support_y[t : t + 1],
        batch.query_x[t : t + 1],
        batch.query_y[t : t + 1],
    )


# --- ProtoNets: the pure maths --------------------------------------------------------------------


def test_prototype_logits_known_answer() -> None:
    # class 0: (0, 0), (2, 0) -> prototype (1, 0); class 1: (0, 2), (0, 4) -> prototype (0, 3)
    support = torch.tensor([[[0.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 4.0]]])
    labels = torch.tensor([[0, 1, 0, 1]])  # not class-major: the labels decide, not the order
    query = torch.tensor([[[1.0, 1.0], [0.0, 3.0]]])
    logits = prototype_logits(support, labels, query, ways=2)
    assert_close(logits, torch.tensor([[[-1.0, -5.0], [-10.0, 0.0]]]))
    cosine = prototype_logits(support, labels, query, ways=2, distance="cosine")
    assert_close(cosine, torch.tensor([[[1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, 1.0]]]))


def test_prototype_logits_batched_equals_per_task_loop() -> None:
    gen = torch.Generator().manual_seed(0)
    tasks, ways, shots, query, dim = 3, 4, 2, 5, 6
    support = torch.randn(tasks, ways * shots, dim, generator=gen)
    labels = torch.stack([torch.randperm(ways * shots, generator=gen) % ways for _ in range(tasks)])
    queries = torch.randn(tasks, query, dim, generator=gen)
    expected = torch.empty(tasks, query, ways)
    for t in range(tasks):
        for w in range(ways):
            prototype = support[t][labels[t] == w].mean(dim=0)
            for q in range(query):
                expected[t, q, w] = -((queries[t, q] - prototype) ** 2).sum()
    assert_close(prototype_logits(support, labels, queries, ways), expected)


def test_prototype_logits_rejects_bad_shapes() -> None:
    support, labels = torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="support_emb"):
        prototype_logits(support[0], labels, torch.zeros(2, 1, 3), ways=2)
    with pytest.raises(ValueError, match="support_y"):
        prototype_logits(support, labels[:, :3], torch.zeros(2, 1, 3), ways=2)
    with pytest.raises(ValueError, match="query_emb"):
        prototype_logits(support, labels, torch.zeros(2, 1, 5), ways=2)
    with pytest.raises(ValueError, match="distance"):
        prototype_logits(support, labels, torch.zeros(2, 1, 3), ways=2, distance="l1")  # type: ignore[arg-type]


# --- Matching Networks: attention and full-context embeddings ------------------------------------


def test_matching_attention_known_answer() -> None:
    support = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])  # cosines to (1, 0): 1, 0, 1/√2
    labels = torch.tensor([[0, 1, 1]])
    query = torch.tensor([[[5.0, 0.0]]])
    weights = torch.tensor([math.e, 1.0, math.exp(1 / math.sqrt(2))])
    attention = weights / weights.sum()
    assert_close(cosine_attention(support, query), attention.view(1, 1, 3))
    probs = torch.stack([attention[0], attention[1] + attention[2]]).view(1, 1, 2)
    assert_close(attention_class_probs(attention.view(1, 1, 3), labels, ways=2), probs)
    assert_close(matching_log_probs(support, labels, query, ways=2), torch.log(probs + 1e-8))


def test_matching_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="query_emb"):
        cosine_attention(torch.zeros(1, 3, 2), torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match="support_y"):
        attention_class_probs(torch.zeros(1, 1, 3), torch.zeros(1, 2, dtype=torch.int64), ways=2)


def _lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step written out (gate order i, f, g, o, as torch.nn.LSTM documents)."""
    i, f, g, o = (w_ih @ x + b_ih + w_hh @ h + b_hh).chunk(4)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def test_fce_support_equals_a_hand_written_bidirectional_loop() -> None:
    learner = _learner(_config("matching_fce"))
    lstm = learner.net["fce_support"]
    p = {k: v.detach() for k, v in lstm.named_parameters()}
    emb = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1))
    expected = emb.clone()
    for t in range(2):
        for suffix, order in (("", range(4)), ("_reverse", reversed(range(4)))):
            weights = [
                p[f"{n}_l0{suffix}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            h, c = torch.zeros(8), torch.zeros(8)
            for i in order:
                h, c = _lstm_step(emb[t, i], h, c, *weights)
                expected[t, i] += h
    assert_close(fce_support(lstm, p, emb), expected)


def test_fce_query_equals_the_paper_equations_per_query() -> None:
    learner = _learner(_config("matching_fce"))
    cell = learner.net["fce_query"]
    p = {k: v.detach() for k, v in cell.named_parameters()}
    gen = torch.Generator().manual_seed(2)
    query, support, steps = (
        torch.randn(2, 3, 8, generator=gen),
        torch.randn(2, 4, 8, generator=gen),
        3,
    )
    expected = torch.empty_like(query)
    for t in range(2):
        for q in range(3):
            f, g = query[t, q], support[t]
            h, c = f, torch.zeros(8)  # h_0 = f'(x̂), c_0 = 0
            for _ in range(steps):
                r = torch.softmax(g @ h, dim=0) @ g  # r_{k-1}: attention read with h_{k-1}
                h_hat, c = _lstm_step(
                    torch.cat([f, r]),
                    h,
                    c,
                    p["weight_ih"],
                    p["weight_hh"],
                    p["bias_ih"],
                    p["bias_hh"],
                )
                h = h_hat + f
            expected[t, q] = h
    assert_close(fce_query(cell, p, query, support, steps), expected)
    assert_close(fce_query(cell, p, query, support, 0), query)


def test_fce_with_zero_lstm_weights_equals_plain_matching() -> None:
    # all-zero LSTM weights output h = 0 at every step, so g = g' and f = f'
    fce = _learner(_config("matching_fce"))
    plain = _learner(_config("matching"))
    params = plain.init_params()
    fce_params = {
        k: (params[k] if k.startswith("embedding.") else torch.zeros_like(v))
        for k, v in fce.init_params().items()
    }
    batch = _random_batch(2, 3, 2, 2)
    assert_close(fce.query_log_probs(fce_params, batch, 3), plain.query_log_probs(params, batch, 3))


# --- Relation Networks: class sums, pairs, scores ------------------------------------------------


def test_class_feature_sums_and_relation_pairs_known_answer() -> None:
    features = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 1, 2, 2)  # value = index
    labels = torch.tensor([[0, 1, 0, 1]])
    sums = class_feature_sums(features, labels, ways=2)
    assert_close(sums, torch.tensor([2.0, 4.0]).view(1, 2, 1, 1, 1).expand(1, 2, 1, 2, 2))
    query = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1, 1).expand(1, 3, 1, 2, 2)
    pairs = relation_pairs(sums, query)
    assert pairs.shape == (1, 3, 2, 2, 2, 2)
    for q in range(3):
        for w in range(2):
            assert_close(pairs[0, q, w, 0], sums[0, w, 0])  # class map first, as in the paper
            assert_close(pairs[0, q, w, 1], query[0, q, 0])
    with pytest.raises(ValueError, match="query_features"):
        relation_pairs(sums, query[..., :1])


def test_relation_scores_shape_and_range() -> None:
    learner = _learner(_config("relation"))
    scores = learner.relation_scores(learner.init_params(), _random_batch(2, 3, 2, 4), 3)
    assert scores.shape == (2, 12, 3)
    assert bool(((scores > 0) & (scores < 1)).all())


# --- every learner -----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_scores_equal_a_per_task_loop(variant: str) -> None:
    learner = _learner(_config(variant))
    params = learner.init_params()
    batch = _random_batch(3, 3, 2, 2)
    with torch.no_grad():
        batched = _scores(learner, params, batch, 3)
        looped = torch.cat([_scores(learner, params, _task(batch, t), 3) for t in range(3)])
    assert batched.shape == (3, 6, 3)
    assert_close(batched, looped)


@pytest.mark.parametrize("variant", VARIANTS)
def test_outer_loss_matches_its_definition_and_reaches_every_parameter(variant: str) -> None:
    learner = _learner(_config(variant))
    params = learner.init_params()
    batch = _random_batch(2, 3, 2, 2)
    out = learner.outer_loss(params, batch, iteration=0)
    scores = _scores(learner, params, batch, 3).detach()
    labels = batch.query_y
    if variant == "protonet":
        expected = F.cross_entropy(scores.flatten(0, 1), labels.flatten())
    elif variant == "relation":
        expected = ((scores - F.one_hot(labels, 3)) ** 2).mean()
    else:
        expected = -scores.gather(-1, labels.unsqueeze(-1)).mean()
    assert_close(out.loss.detach(), expected)
    accuracy = (scores.argmax(-1) == labels).float().mean()
    assert_close(out.metrics["query_accuracy"], accuracy)
    out.loss.backward()
    assert all(v.grad is not None and bool(v.grad.isfinite().all()) for v in params.values())
    # a conv bias right before batch norm has a zero gradient (BN subtracts the mean)
    zero = [k for k, v in params.items() if not k.endswith("conv.bias") and not v.grad.any()]
    assert zero == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_adaptation_curve_is_per_task_query_accuracy(variant: str) -> None:
    learner = _learner(_config(variant))
    params = learner.init_params()
    batch = _random_batch(3, 3, 2, 2)
    curve = learner.adaptation_curve(params, batch, 0)
    scores = _scores(learner, params, batch, 3)
    assert curve.shape == (3, 1) and not curve.requires_grad
    assert_close(curve[:, 0], (scores.argmax(-1) == batch.query_y).float().mean(dim=1))
    assert_close(learner.adaptation_curve(params, batch, 5), curve)  # no inner loop: steps unused
    with pytest.raises(ValueError, match="steps"):
        learner.adaptation_curve(params, batch, -1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_init_is_seeded(variant: str) -> None:
    cfg = _config(variant)
    first, again, other = (_learner(cfg, s).init_params() for s in (0, 0, 1))
    assert all(v.is_leaf and v.requires_grad for v in first.values())
    for k in first:
        assert_close(first[k], again[k])
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].numel() > 64)


def test_bad_configs_raise() -> None:
    with pytest.raises(ValueError, match="task.family"):
        _learner(SupervisedConfig(algo=AlgoConfig(name="protonet")))
    mlp = _config("protonet")
    with pytest.raises(ValueError, match="model.network"):
        _learner(SupervisedConfig(task=mlp.task, algo=mlp.algo))
    strided = SupervisedConfig(
        task=mlp.task, model=ModelConfig(network="conv4_strided"), algo=AlgoConfig(name="relation")
    )
    with pytest.raises(ValueError, match="model.network"):
        _learner(strided)
    no_steps = MatchingConfig(full_context_embeddings=True, fce_steps=0)
    algo = AlgoConfig(name="matching")
    with pytest.raises(ValueError, match="matching.fce_steps"):
        _learner(SupervisedConfig(task=mlp.task, model=mlp.model, algo=algo, matching=no_steps))


# --- it learns: a few seconds of meta-training on a tiny Omniglot subset --------------------------


@pytest.fixture(scope="module")
def omniglot_available() -> None:
    require_omniglot_root()


@pytest.mark.xdist_group("omniglot")  # one worker builds the default cache once
@pytest.mark.parametrize("variant", VARIANTS)
def test_learns_on_a_tiny_omniglot_subset(
    variant: str, omniglot_available: None, tmp_path: Path
) -> None:
    iterations = 30
    cfg = SupervisedConfig(
        task=TaskConfig(
            family="omniglot",
            ways=5,
            shots=1,
            query_shots=5,
            meta_batch_size=4,
            protocol="protonets",
            num_characters=30,
        ),
        model=ModelConfig(network="conv4_maxpool", filters=16),
        **VARIANTS[variant],  # type: ignore[arg-type]
        optim=OptimConfig(lr=3e-3, iterations=iterations),
        run=RunConfig(log_every=iterations, checkpoint_every=0, progress=False),
    )
    learner = _learner(cfg)
    held_out = build_family(cfg.task, "test", CPU)  # characters never seen in training

    def accuracy(params) -> float:
        curves = adaptation_curves(learner, params, held_out, num_tasks=50, steps=0, seed=123)
        return float(curves.mean())

    before = accuracy(learner.init_params())
    with open_run(tmp_path / "run", cfg, log_backends=("csv",)) as run:
        result = train(cfg, learner, build_family(cfg.task, "train", CPU), run, CPU)
    after = accuracy(result.params)
    assert result.iterations == iterations
    assert after > before + 0.15, (before, after)
    assert after > 0.2 + 0.25, (before, after)  # chance is 0.2


# --- configs -------------------------------------------------------------------------------------


CONFIGS = sorted(
    path
    for algo in ("protonet", "matching", "relation")
    for path in (REPO / "configs" / algo).glob("*.yaml")
)


def test_every_metric_learner_has_configs() -> None:
    names = {f"{p.parent.name}/{p.name}" for p in CONFIGS}
    expected = {f"protonet/omniglot_{s}.yaml" for s in ("5w1s", "5w5s", "20w1s", "20w5s")}
    expected |= {"matching/omniglot_5w1s.yaml", "relation/omniglot_5w1s.yaml"}
    expected |= {"relation/omniglot_5w5s.yaml"}
    assert expected <= names
    assert any(
        (load_config(SupervisedConfig, p).matching or MatchingConfig()).full_context_embeddings
        for p in CONFIGS
    )


def test_held_out_tasks_come_from_characters_never_trained_on(monkeypatch) -> None:
    """The driver's task families: no character of the train split is ever evaluated on."""
    import metarl.algorithms.supervised as supervised
    from envs.supervised import OmniglotData, OmniglotFamily

    blank = OmniglotData(  # every character present, no drawing decoded: the split is by id
        images=torch.zeros(1623, 20, 28, 28, dtype=torch.uint8),
        alphabet_index=torch.zeros(1623, dtype=torch.int64),
        alphabets=("images_background/blank",),
        archive_sha256={},
        cache_path=None,
    )

    def family(*args, **kwargs):
        kwargs.pop("root", None)
        return OmniglotFamily(*args, **{**kwargs, "data": blank})

    monkeypatch.setattr(supervised, "OmniglotFamily", family)
    chars = {}
    for protocol in ("maml", "protonets", "vinyals"):
        task = TaskConfig(family="omniglot", ways=5, shots=1, query_shots=1, protocol=protocol)
        for split in ("train", "val", "test"):
            fam = build_family(task, split, CPU)
            batch = fam.sample(40, torch.Generator().manual_seed(0), split == "train")
            chars[split] = set(batch.params["characters"].flatten().tolist())
            assert len(chars[split]) > 20, split
        assert not chars["train"] & chars["test"] and not chars["train"] & chars["val"]
        assert not chars["val"] & chars["test"]
