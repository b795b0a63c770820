"""The built-in distillers against hand computations (plain Python over rows and classes),
their gradients, their limiting cases and their behaviour on zero probabilities."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdbench import DistillBatch, Distiller, OptionError
from kdbench.options import describe
from kdbench_plugins.distillers import (
    Dist,
    Dkd,
    Hinton,
    LabelSmoothing,
    Mse,
    Paper,
    ProbTemperature,
    ReverseKl,
    Rkd,
)

ALL = {
    cls.name: cls
    for cls in (Paper, Hinton, ReverseKl, ProbTemperature, Mse, Dkd, Dist, Rkd, LabelSmoothing)
}

# The fixed example: 3 images, 4 classes; the student's probabilities P, logits log P.
P = [[0.5, 0.2, 0.2, 0.1], [0.1, 0.6, 0.25, 0.05], [0.3, 0.3, 0.3, 0.1]]
T = [[2.0, 0.5, -1.0, 0.0], [0.0, 3.0, 1.0, -2.0], [1.0, -0.5, 2.5, 0.5]]
Y = [0, 1, 3]
S = [[math.log(v) for v in row] for row in P]
CE = sum(-S[i][y] for i, y in enumerate(Y)) / len(Y)


def fixed_batch(teacher: bool = True) -> DistillBatch:
    return DistillBatch(
        log_probs=torch.tensor(S, dtype=torch.float64),
        labels=torch.tensor(Y),
        teacher_logits=torch.tensor(T, dtype=torch.float64) if teacher else None,
    )


# --- plain-Python formulas -------------------------------------------------------------


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def softmax(row, tau=1.0):
    top = max(v / tau for v in row)
    exps = [math.exp(v / tau - top) for v in row]
    return [e / sum(exps) for e in exps]


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def batch_kl(first, second, tau):
    """Mean over rows of KL(σ(first/τ) ‖ σ(second/τ))."""
    return mean(kl(softmax(a, tau), softmax(b, tau)) for a, b in zip(first, second, strict=True))


def pearson(a, b, eps=1e-8):
    ma, mb = mean(a), mean(b)
    da, db = [x - ma for x in a], [x - mb for x in b]
    num = sum(x * y for x, y in zip(da, db, strict=True))
    return num / (math.sqrt(sum(x * x for x in da)) * math.sqrt(sum(y * y for y in db)) + eps)


def huber(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def sub(a, b):
    return [x - y for x, y in zip(a, b, strict=True)]


def distance_matrix(rows):
    n = len(rows)
    d = [[norm(sub(rows[i], rows[j])) if i != j else 0.0 for j in range(n)] for i in range(n)]
    scale = sum(map(sum, d)) / (n * (n - 1))
    return [[v / scale for v in row] for row in d]


def angle_tensor(rows):
    n = len(rows)

    def unit(i, j):
        v = sub(rows[i], rows[j])
        length = max(norm(v), 1e-12)
        return [x / length for x in v]

    return [
        [
            [sum(a * b for a, b in zip(unit(i, j), unit(i, k), strict=True)) for k in range(n)]
            for j in range(n)
        ]
        for i in range(n)
    ]


def flat(nested):
    if isinstance(nested, list):
        return [v for item in nested for v in flat(item)]
    return [nested]


def check(loss, total, **parts):
    assert loss.total.item() == pytest.approx(total, rel=1e-6)
    assert set(loss.parts) == set(parts)
    for name, value in parts.items():
        assert loss.parts[name].item() == pytest.approx(value, rel=1e-6, abs=1e-12), name


# --- hand computations -------------------------------------------------------------------


def test_paper_by_hand():
    kd = batch_kl(T, S, 3.0)
    check(Paper().loss(fixed_batch()), CE + 0.9 * kd, ce=CE, kd=kd)
    scaled = Paper(temperature=2.0, kd_weight=0.5, ce_weight=0.3, t2_scaling=True)
    kd = batch_kl(T, S, 2.0) * 4.0  # logged scaled, as the paper's code logs it
    check(scaled.loss(fixed_batch()), 0.3 * CE + 0.5 * kd, ce=CE, kd=kd)


def test_hinton_by_hand():
    kd = batch_kl(T, S, 4.0)
    check(Hinton().loss(fixed_batch()), 0.1 * CE + 0.9 * 16.0 * kd, ce=CE, kd=kd)


def test_reverse_kl_by_hand():
    kd = batch_kl(S, T, 3.0)
    check(ReverseKl().loss(fixed_batch()), CE + 0.9 * kd, ce=CE, kd=kd)


def test_prob_temperature_by_hand():
    kd = batch_kl(T, P, 3.0) * 9.0
    check(ProbTemperature().loss(fixed_batch()), CE + 0.9 * kd, ce=CE, kd=kd)


def test_prob_temperature_is_the_notebooks_expression():
    """`KLDivLoss()(log_softmax(y/T), softmax(t/T))·T²·C·α` with y the probabilities."""
    y, t, tau, alpha = torch.tensor(P, dtype=torch.float64), fixed_batch().teacher(), 3.0, 0.9
    with warnings.catch_warnings():  # 'mean' reduction: torch warns it is not the batch mean
        warnings.simplefilter("ignore")
        notebook = nn.KLDivLoss()(F.log_softmax(y / tau, dim=1), F.softmax(t / tau, dim=1))
    notebook = notebook * tau * tau * len(P[0]) * alpha
    loss = ProbTemperature(kd_weight=alpha).loss(fixed_batch())
    assert (alpha * loss.parts["kd"]).item() == pytest.approx(notebook.item(), rel=1e-12)


def test_mse_by_hand():
    for tau in (1.0, 2.0):
        kd = mean((P[i][c] - softmax(T[i], tau)[c]) ** 2 for i in range(len(P)) for c in range(4))
        check(Mse(temperature=tau, kd_weight=0.7).loss(fixed_batch()), CE + 0.7 * kd, ce=CE, kd=kd)


def test_dkd_by_hand():
    tau, tckd, nckd = 4.0, [], []
    for s, t, y in zip(S, T, Y, strict=True):
        ps, pt = softmax(s, tau), softmax(t, tau)
        tckd.append(kl([pt[y], 1 - pt[y]], [ps[y], 1 - ps[y]]))
        others = [c for c in range(4) if c != y]
        nckd.append(
            kl([pt[c] / (1 - pt[y]) for c in others], [ps[c] / (1 - ps[y]) for c in others])
        )
    tckd, nckd = mean(tckd), mean(nckd)
    total = CE + (1.0 * tckd + 8.0 * nckd) * tau**2
    check(Dkd().loss(fixed_batch()), total, ce=CE, tckd=tckd, nckd=nckd)


def test_dist_by_hand():
    tau = 2.0
    ys, yt = [softmax(r, tau) for r in S], [softmax(r, tau) for r in T]
    inter = 1 - mean(pearson(a, b) for a, b in zip(ys, yt, strict=True))
    columns = range(4)
    intra = 1 - mean(pearson([r[c] for r in ys], [r[c] for r in yt]) for c in columns)
    total = CE + tau**2 * (0.5 * inter + 2.0 * intra)
    loss = Dist(temperature=tau, beta=0.5, gamma=2.0).loss(fixed_batch())
    check(loss, total, ce=CE, inter=inter, intra=intra)


def test_rkd_by_hand():
    distances = zip(flat(distance_matrix(S)), flat(distance_matrix(T)), strict=True)
    angles = zip(flat(angle_tensor(S)), flat(angle_tensor(T)), strict=True)
    distance, angle = mean(huber(a, b) for a, b in distances), mean(huber(a, b) for a, b in angles)
    assert distance > 0 and angle > 0
    total = CE + 25.0 * distance + 50.0 * angle
    check(Rkd().loss(fixed_batch()), total, ce=CE, distance=distance, angle=angle)


def test_rkd_angle_is_built_on_chunks_of_64_rows():
    torch.manual_seed(0)
    s = torch.log_softmax(torch.randn(70, 4, dtype=torch.float64), dim=1)
    t = torch.randn(70, 4, dtype=torch.float64)

    def angle(rows):
        batch = DistillBatch(
            log_probs=s[rows], labels=torch.zeros(len(s[rows]), dtype=int), teacher_logits=t[rows]
        )
        return Rkd().loss(batch).parts["angle"].item()

    whole = angle(slice(None))
    assert whole == pytest.approx((64 * angle(slice(0, 64)) + 6 * angle(slice(64, 70))) / 70)
    assert whole != pytest.approx(angle(slice(0, 64)))


def test_label_smoothing_by_hand():
    eps = 0.1
    uniform = mean(-mean(row) for row in S)
    check(
        LabelSmoothing().loss(fixed_batch(False)),
        (1 - eps) * CE + eps * uniform,
        ce=CE,
        uniform=uniform,
    )
    # The same as the cross-entropy against the smoothed target (1 − ε)·onehot + ε/C.
    target = [[(1 - eps) * (c == y) + eps / 4 for c in range(4)] for y in Y]
    rows = zip(target, S, strict=True)
    smoothed = mean(-sum(q * s for q, s in zip(qs, row, strict=True)) for qs, row in rows)
    assert LabelSmoothing().loss(fixed_batch(False)).total.item() == pytest.approx(smoothed)


# --- the paper's loss, digit for digit --------------------------------------------------


def legacy(student_log_probs, labels, teacher_logits, distill):
    """The harness's loss before distillers were plugins (kdbench.distill.kd_loss)."""
    ce = F.nll_loss(student_log_probs, labels)
    tau = distill.temperature
    soft_student = F.log_softmax(student_log_probs / tau, dim=1)
    soft_teacher = F.log_softmax(teacher_logits / tau, dim=1)
    kd = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True)
    if distill.t2_scaling:
        kd = kd * tau**2
    total = distill.ce_weight * ce + distill.kd_weight * kd
    parts = {"ce": ce, "kd": kd}
    return total, parts


@pytest.mark.parametrize(
    "paper",
    [
        Paper(),
        Paper(t2_scaling=True),
        Paper(temperature=2.5, kd_weight=0.7, ce_weight=0.3, t2_scaling=True),
    ],
)
def test_paper_is_the_legacy_loss_bit_for_bit(paper):
    torch.manual_seed(1)
    for _ in range(5):
        log_probs = torch.log(torch.softmax(torch.randn(32, 6), dim=1).clamp_min(1e-12))
        labels, teacher = torch.randint(0, 6, (32,)), torch.randn(32, 6) * 4
        total, parts = legacy(log_probs, labels, teacher, paper)
        loss = paper.loss(DistillBatch(log_probs, labels, teacher))
        assert torch.equal(loss.total, total)
        assert loss.parts.keys() == parts.keys()
        assert all(torch.equal(loss.parts[k], parts[k]) for k in parts)


def test_paper_options_are_the_distill_table():
    options = [(o.name, o.type, o.default, o.help, o.limits()) for o in describe(Paper)]
    assert options == [
        ("temperature", "number", 3.0, "τ of the softened distributions", "x > 0"),
        ("kd_weight", "number", 0.9, "λ, weight of the KL term", "x ≥ 0"),
        ("ce_weight", "number", 1.0, "weight of the cross-entropy term", "x ≥ 0"),
        (
            "t2_scaling",
            "boolean",
            False,
            "multiply the KL term by τ² (Hinton); not in the paper",
            "",
        ),
    ]


# --- gradients ------------------------------------------------------------------------------


def model_gradient(distiller: Distiller, teacher: torch.Tensor | None) -> torch.Tensor:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 4), nn.LogSoftmax(dim=1)).double()
    x, labels = torch.randn(8, 5, dtype=torch.float64), torch.randint(0, 4, (8,))
    distiller.loss(DistillBatch(model(x), labels, teacher)).total.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("name", sorted(ALL))
def test_gradients_reach_the_student_and_the_teacher_matters(name):
    distiller = ALL[name]()
    if not distiller.uses_teacher:
        grad = model_gradient(distiller, None)
        assert torch.isfinite(grad).all() and grad.abs().max() > 1e-6
        return
    generator = torch.Generator().manual_seed(3)
    one, other = (torch.randn(8, 4, dtype=torch.float64, generator=generator) * 3 for _ in "ab")
    grad, changed = model_gradient(distiller, one), model_gradient(distiller, other)
    assert torch.isfinite(grad).all() and grad.abs().max() > 1e-6
    assert not torch.allclose(grad, changed), "the teacher's logits must reach the loss"


# --- limiting cases ---------------------------------------------------------------------------


def random_batch(teacher_from=None, rows=8, classes=4, seed=4):
    generator = torch.Generator().manual_seed(seed)
    log_probs = torch.log_softmax(
        torch.randn(rows, classes, dtype=torch.float64, generator=generator) * 2, dim=1
    )
    labels = torch.randint(0, classes, (rows,), generator=generator)
    teacher = log_probs.clone() if teacher_from is None else teacher_from(log_probs)
    return DistillBatch(log_probs, labels, teacher)


def test_label_smoothing_needs_no_teacher_and_is_ce_without_smoothing():
    assert LabelSmoothing.uses_teacher is False
    assert all(cls.uses_teacher for cls in ALL.values() if cls is not LabelSmoothing)
    batch = random_batch()
    batch = DistillBatch(batch.log_probs, batch.labels, None)
    loss = LabelSmoothing(smoothing=0.0).loss(batch)
    assert torch.equal(loss.total, batch.cross_entropy())
    assert torch.equal(LabelSmoothing().loss(batch).parts["ce"], batch.cross_entropy())


def test_dkd_with_the_students_own_logits_is_zero():
    loss = Dkd().loss(random_batch())
    assert loss.parts["tckd"].item() == pytest.approx(0, abs=1e-12)
    assert loss.parts["nckd"].item() == pytest.approx(0, abs=1e-12)


def test_dist_with_identical_outputs_is_zero():
    loss = Dist(temperature=2.0).loss(random_batch())
    assert loss.parts["inter"].item() == pytest.approx(0, abs=1e-5)
    assert loss.parts["intra"].item() == pytest.approx(0, abs=1e-5)


def test_rkd_is_scale_invariant():
    loss = Rkd().loss(random_batch(lambda s: 3.0 * s))
    assert loss.parts["distance"].item() == pytest.approx(0, abs=1e-10)
    assert loss.parts["angle"].item() == pytest.approx(0, abs=1e-10)
    assert Rkd().loss(random_batch(lambda s: s + 1.0)).parts["distance"].item() == pytest.approx(
        0, abs=1e-10
    )  # a shift moves no distance either


def test_rkd_of_one_row_is_plain_cross_entropy():
    batch = random_batch(lambda s: s * 2 + 1, rows=1)
    loss = Rkd().loss(batch)
    assert loss.parts["distance"].item() == 0 and loss.parts["angle"].item() == 0
    assert loss.total.item() == pytest.approx(batch.cross_entropy().item())


# --- zero probabilities ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
def test_finite_with_a_probability_of_exactly_zero(name):
    # A circuit's probabilities, some exactly 0 (the label's, in row 1); one row one-hot.
    p = torch.tensor(
        [[0.5, 0.0, 0.3, 0.2], [0.0, 0.7, 0.3, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25] * 4],
        requires_grad=True,
    )
    log_probs = torch.log(p.clamp_min(1e-12))
    labels = torch.tensor([1, 0, 0, 2])
    teacher = torch.tensor([[30.0, -30.0, 0.0, 1.0], [0.0] * 4, [-50.0, 50.0, 0.0, 0.0], [1.0] * 4])
    distiller = ALL[name]()
    loss = distiller.loss(
        DistillBatch(log_probs, labels, teacher if distiller.uses_teacher else None)
    )
    assert torch.isfinite(loss.total)
    assert all(torch.isfinite(v) for v in loss.parts.values())
    loss.total.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().max() > 0


# --- options and registration ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ALL))
def test_options_are_bounded_and_documented(name):
    cls = ALL[name]
    doc = cls.__doc__ or ""
    assert cls.summary() and "Reference" in doc
    for info in describe(cls):
        assert info.help
        if info.name == "temperature":
            assert (info.minimum, info.exclusive_minimum) == (0, True)
            with pytest.raises(OptionError):
                cls(temperature=0.0)
        elif info.type == "number":
            assert info.minimum == 0
            with pytest.raises(OptionError):
                cls(**{info.name: -0.5})


def test_label_smoothing_is_at_most_one():
    with pytest.raises(OptionError):
        LabelSmoothing(smoothing=1.5)


def test_registry_lists_the_nine(registry):
    assert set(ALL) <= set(registry.names("distillers"))
    for name, cls in ALL.items():
        assert registry.get("distillers", name) is cls
        assert registry.owner("distillers", name).builtin
