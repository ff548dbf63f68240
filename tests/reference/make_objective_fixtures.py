#!/usr/bin/python3
"""Golden fixtures for tests/train_objective_test.cpp: losses, optimizers, LR schedules and metrics.

Regenerate (not part of ctest; needs Debian's python3-torch 1.13, python3-numpy and python3-sklearn, which only
/usr/bin/python3 has -- the `python3` first on PATH lacks them):

    /usr/bin/python3 tests/reference/make_objective_fixtures.py

It writes tests/reference/fixtures/objective.json (commit it). Every input is generated from fixed seeds and
written into the JSON, so the C++ test rebuilds the identical problems from the file alone and never re-derives
random numbers.
"""
import json
import math
import os
import warnings

import numpy as np
import sklearn
import sklearn.metrics as skm
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "objective.json")


def tolist(t):
    """Tensor/array -> nested lists of Python floats/ints (floats keep all their bits through json)."""
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    return np.asarray(t).tolist()


# ---- optimizers --------------------------------------------------------------------------------------------------

def optimizer_fixtures():
    """5 steps of each optimizer on y = W x + b (W 3x4), mse loss, with a per-step learning rate that changes
    after step 2 so that set_learning_rate is checked too."""
    g = torch.Generator().manual_seed(1234)
    w0 = torch.randn(3, 4, generator=g, dtype=torch.float32) * 0.5
    b0 = torch.randn(3, generator=g, dtype=torch.float32) * 0.1
    x = torch.randn(8, 4, generator=g, dtype=torch.float32)
    y = torch.randn(8, 3, generator=g, dtype=torch.float32)

    configs = [
        dict(id="sgd_plain", name="sgd", lr=0.1),
        dict(id="sgd_nesterov", name="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
        dict(id="adam", name="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
        dict(id="adamw", name="adamw", lr=0.01, beta1=0.85, beta2=0.99, eps=1e-8, weight_decay=0.1),
        dict(id="rmsprop", name="rmsprop", lr=0.01, alpha=0.9, eps=1e-8, momentum=0.5, weight_decay=0.01),
        dict(id="adagrad", name="adagrad", lr=0.1, eps=1e-8, weight_decay=0.01),
    ]
    out = []
    for c in configs:
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        params = [w, b]
        lr = c["lr"]
        if c["name"] == "sgd":
            opt = torch.optim.SGD(params, lr=lr, momentum=c.get("momentum", 0.0), nesterov=c.get("nesterov", False),
                                  weight_decay=c.get("weight_decay", 0.0))
        elif c["name"] == "adam":
            opt = torch.optim.Adam(params, lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                                   weight_decay=c.get("weight_decay", 0.0))
        elif c["name"] == "adamw":
            opt = torch.optim.AdamW(params, lr=lr, betas=(c["beta1"], c["beta2"]), eps=c["eps"],
                                    weight_decay=c.get("weight_decay", 0.0))
        elif c["name"] == "rmsprop":
            opt = torch.optim.RMSprop(params, lr=lr, alpha=c["alpha"], eps=c["eps"], momentum=c["momentum"],
                                      weight_decay=c.get("weight_decay", 0.0))
        elif c["name"] == "adagrad":
            opt = torch.optim.Adagrad(params, lr=lr, eps=c["eps"], weight_decay=c.get("weight_decay", 0.0))
        lrs = [lr, lr, lr, lr * 0.5, lr * 0.5]
        losses = []
        for step_lr in lrs:
            for group in opt.param_groups:
                group["lr"] = step_lr
            opt.zero_grad()
            loss = F.mse_loss(F.linear(x, w, b), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        cfg = {k: v for k, v in c.items() if k != "id"}
        out.append(dict(id=c["id"], options=cfg, lrs=lrs, losses=losses, weight=tolist(w), bias=tolist(b)))
    return dict(problem=dict(weight=tolist(w0), bias=tolist(b0), x=tolist(x), y=tolist(y), steps=5),
                cases=out)


# ---- schedules ---------------------------------------------------------------------------------------------------

def lr_sequence(make_scheduler, base_lr, steps=30):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if t + 1 < steps:  # OneCycleLR cannot compute step T (pct_start = 1 divides by zero there)
                sched.step()
    return lrs


def schedule_fixtures():
    S = torch.optim.lr_scheduler
    cases = []

    def add(case_id, options, base_lr, total_steps, make):
        cases.append(dict(id=case_id, options=options, base_lr=base_lr, total_steps=total_steps,
                          lrs=lr_sequence(make, base_lr, 30)))

    add("step", dict(name="step", step_size=7, gamma=0.5), 0.1, 30, lambda o: S.StepLR(o, step_size=7, gamma=0.5))
    add("cosine", dict(name="cosine", min_lr=0.001), 0.1, 30,
        lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=0.001))
    add("cosine_zero_min", dict(name="cosine", min_lr=0.0), 0.05, 30, lambda o: S.CosineAnnealingLR(o, T_max=30))
    add("one_cycle", dict(name="one_cycle", pct_start=0.3, div_factor=25.0, final_div_factor=1e4), 0.1, 30,
        lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=30, pct_start=0.3, div_factor=25.0,
                               final_div_factor=1e4, anneal_strategy="cos", three_phase=False,
                               cycle_momentum=False))
    # A fractional phase boundary (0.25 * 30 - 1 = 6.5) and other factors.
    add("one_cycle_frac", dict(name="one_cycle", pct_start=0.25, div_factor=10.0, final_div_factor=100.0), 0.2, 30,
        lambda o: S.OneCycleLR(o, max_lr=0.2, total_steps=30, pct_start=0.25, div_factor=10.0,
                               final_div_factor=100.0, anneal_strategy="cos", three_phase=False,
                               cycle_momentum=False))
    # Phase-boundary extremes: no rise (the boundary is at -1) and no fall.
    add("one_cycle_pct0", dict(name="one_cycle", pct_start=0.0, div_factor=25.0, final_div_factor=1e4), 0.1, 30,
        lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=30, pct_start=0.0, anneal_strategy="cos",
                               three_phase=False, cycle_momentum=False))
    add("one_cycle_pct1", dict(name="one_cycle", pct_start=1.0, div_factor=25.0, final_div_factor=1e4), 0.1, 30,
        lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=30, pct_start=1.0, anneal_strategy="cos",
                               three_phase=False, cycle_momentum=False))
    # exponential with step_size 1 is ExponentialLR(gamma); with step_size s it is ExponentialLR(gamma ** (1 / s)).
    add("exponential", dict(name="exponential", step_size=1, gamma=0.9), 0.1, 30,
        lambda o: S.ExponentialLR(o, gamma=0.9))
    add("exponential_s5", dict(name="exponential", step_size=5, gamma=0.5), 0.1, 30,
        lambda o: S.ExponentialLR(o, gamma=0.5 ** (1.0 / 5.0)))
    return cases


# ---- losses ------------------------------------------------------------------------------------------------------

def loss_fixtures():
    rng = np.random.default_rng(42)
    logits = rng.normal(0.0, 2.0, size=(6, 4))
    classes = rng.integers(0, 4, size=6)
    binary = rng.integers(0, 2, size=6)
    binary_logits = rng.normal(0.0, 2.0, size=6)
    reg_out = rng.normal(0.0, 1.5, size=6)
    reg_target = rng.normal(0.0, 1.5, size=6)

    def for_dtype(dtype):
        lg = torch.tensor(logits, dtype=dtype)
        cl = torch.tensor(classes, dtype=torch.int64)
        bl = torch.tensor(binary_logits, dtype=dtype)
        bt = torch.tensor(binary, dtype=dtype)
        ro = torch.tensor(reg_out, dtype=dtype)
        rt = torch.tensor(reg_target, dtype=dtype)
        return dict(
            cross_entropy=F.cross_entropy(lg, cl).item(),
            nll=F.nll_loss(F.log_softmax(lg, dim=1), cl).item(),
            mse=F.mse_loss(ro, rt).item(),
            huber_1=F.huber_loss(ro, rt, delta=1.0).item(),
            huber_0_5=F.huber_loss(ro, rt, delta=0.5).item(),
            bce_binary=F.binary_cross_entropy_with_logits(bl, bt).item(),
            bce_onehot=F.binary_cross_entropy_with_logits(lg, F.one_hot(cl, 4).to(dtype)).item(),
        )

    return dict(inputs=dict(logits=tolist(logits), classes=tolist(classes), binary=tolist(binary),
                            binary_logits=tolist(binary_logits), reg_out=tolist(reg_out),
                            reg_target=tolist(reg_target)),
                float64=for_dtype(torch.float64), float32=for_dtype(torch.float32))


# ---- metrics -----------------------------------------------------------------------------------------------------

def classification_metrics_fixture():
    """6 classes: 0-2 supported and predicted, 3 supported but never predicted, 4 neither supported nor predicted
    (sklearn's macro average leaves it out), 5 predicted but never the truth."""
    rng = np.random.default_rng(7)
    n, c = 40, 6
    y_true = rng.integers(0, 4, size=n)
    scores = rng.normal(0.0, 1.0, size=(n, c))
    scores[np.arange(n), y_true] += 1.0            # a classifier that is right more often than chance
    scores[:, 3] = rng.uniform(-6.0, -5.0, size=n)   # never predicted
    scores[:, 4] = rng.uniform(-10.0, -9.0, size=n)  # never predicted, never true
    scores[:, 5] -= 0.5
    y_pred = scores.argmax(axis=1)
    assert (y_pred == 5).any() and not (y_pred == 3).any() and not (y_pred == 4).any()
    labels = list(range(c))
    out = dict(num_classes=c, y_true=tolist(y_true), scores=tolist(scores), y_pred=tolist(y_pred),
               accuracy=skm.accuracy_score(y_true, y_pred),
               precision_macro=skm.precision_score(y_true, y_pred, average="macro", zero_division=0),
               recall_macro=skm.recall_score(y_true, y_pred, average="macro", zero_division=0),
               f1_macro=skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
               confusion_matrix=tolist(skm.confusion_matrix(y_true, y_pred, labels=labels)))
    topk = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k >= n_classes warns; the score is 1.0 as we document
        for k in (1, 2, 3, 10):
            topk[str(k)] = skm.top_k_accuracy_score(y_true, scores, k=k, labels=labels)
    out["topk_accuracy"] = topk
    return out


def regression_metrics_fixture():
    # A large mean stresses the SS_tot computation (naive sum-of-squares would lose digits).
    rng = np.random.default_rng(11)
    y_true = rng.normal(1000.0, 3.0, size=37)
    y_pred = y_true + rng.normal(0.0, 1.0, size=37)
    return dict(y_true=tolist(y_true), y_pred=tolist(y_pred), mse=skm.mean_squared_error(y_true, y_pred),
                mae=skm.mean_absolute_error(y_true, y_pred), r2=skm.r2_score(y_true, y_pred))


def main():
    torch.manual_seed(0)
    doc = dict(
        generator=dict(script="tests/reference/make_objective_fixtures.py", torch=torch.__version__,
                       numpy=np.__version__, sklearn=sklearn.__version__),
        optimizers=optimizer_fixtures(),
        schedules=schedule_fixtures(),
        losses=loss_fixtures(),
        metrics=dict(classification=classification_metrics_fixture(), regression=regression_metrics_fixture()),
    )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
