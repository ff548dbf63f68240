#pragma once
/// The built-in rules: formulas and default thresholds, with where each number comes from.
/// Every threshold is a `monitor.*` key; every rule can be switched off with monitor.disabled_rules.
///
/// Notation: g = global gradient L2 norm at a step; for layer l: |W_l| weight norm, |G_l| gradient norm,
/// |dW_l| norm of the optimizer update, u_l = |dW_l| / |W_l|; L_t loss at step t; mean_w(L) mean over the last
/// loss_window (w) steps; C number of classes.
///
/// nan_or_inf (critical)           loss or g non-finite. The monitor then names, in this order: a parameter that
///                                 already holds non-finite values; or (re-running the batch layer by layer through
///                                 set_forward) the first layer whose output is non-finite; or the parameter
///                                 nearest the output whose gradient is non-finite (backward); or the loss itself.
///                                 At the first step the advice is about init and inputs (no update happened yet).
///                                 A detailed capture that sees non-finite activations or weights while the loss is
///                                 still finite reports the first such layer in forward order. g is computed in the
///                                 gradients' dtype and, when that overflows, again in float64, so a huge but
///                                 finite gradient is exploding_gradient, not nan_or_inf.
/// exploding_gradient (warning)    g > exploding_grad_norm (1e3) or g > exploding_growth (100) x median of the first
///                                 10 steps' g. Healthy runs of the fault zoo stay within 0.01..10
///                                 (docs/benchmarks.md): 1e3 leaves two orders of margin.
/// vanishing_gradient (warning)    a layer with parameters has 0 < |G_l| < vanishing_grad_norm (1e-7, the default of
///                                 SageMaker Debugger's VanishingGradient rule), or the first layer's gradient/weight
///                                 ratio is below vanishing_depth_ratio (1e-4) times the last layer's (a depth
///                                 product of ~7 sigmoid derivatives <= 0.25 each). An exactly zero gradient is no
///                                 gradient path at all: unchanged_parameter reports it.
/// dead_relu (warning; critical    fraction of a ReLU layer's units (features or channels) that output 0 for every
///   when all units are dead)      example of the captured sample > dead_fraction (0.5, SageMaker Debugger's DeadRelu
///                                 threshold_layer).
/// saturated_activation (warning)  fraction of a sigmoid/tanh layer's outputs within 1% of its bounds >
///                                 saturation_fraction (0.5, as SageMaker Debugger's threshold_layer).
/// loss_not_decreasing (warning)   checked every w/2 steps from step 2w: mean_w(L) > (1 - loss_min_improvement
///                                 (0.01)) x mean of the first w steps (no learning since the start), or, for
///                                 classification, mean_w(L) > (1 - loss_min_improvement) x H, the entropy of the
///                                 class frequencies seen: the loss of a predictor that ignores its inputs (a model
///                                 that only fell from a bad start to ln C has learned nothing; shuffled labels).
///                                 The advice follows the median update/weight ratio: < 1e-4 raise the rate, >
///                                 update_ratio_high lower it, otherwise check labels and frozen parameters first.
/// loss_diverging (critical)       mean of the last 10 losses > divergence_factor (3) x min(L_0, best mean of 10
///                                 consecutive losses so far in the run) and > L_0: far above the best level reached
///                                 and worse than an untrained model. L_0 counts so that a loss that climbs within
///                                 the first 10 steps is caught.
/// loss_oscillating (warning)      checked every w/2 steps from step 2w, with s the std of the last w losses around
///                                 their least-squares line (detrending keeps a fast-falling early loss from
///                                 counting) and their mean above 5% of L_0: where the monitor can recompute each
///                                 example's cross-entropy from the outputs, s > 2 x the minibatch sampling std of
///                                 the batch loss (sqrt of the window's mean of var(per-example loss) / B);
///                                 otherwise s / mean > oscillation_cv (0.5). The sampling test measures what the CV
///                                 threshold stood in for — healthy runs' minibatch noise, 0.2-0.3 of the mean on
///                                 Fashion-MNIST but 1-1.5 near a loss of 0 (8x8 digits, breast cancer) — so it
///                                 keeps converged runs quiet and catches swings of 10-20% of the loss that are 2-4x
///                                 the sampling noise. At ratio 2, three quarters of the variance come from the
///                                 model changing between steps; under a stable model the ratio is 1 +- 1/sqrt(2w).
/// lr_too_high (warning; critical  median over layers of u_l > update_ratio_high (0.1; Karpathy's rule of thumb
///   when > 10x the threshold or   puts healthy updates near 1e-3 of the weights), or the loss diverges or
///   with divergence)              oscillates while u_l > 0.01. u_l is |dW_l| over |W_l| before the step,
///                                 over the layer's weight matrices/kernels (all parameters when it has none).
/// lr_too_low (warning)            median u_l < update_ratio_low (1e-6), or the loss does not decrease while
///                                 median u_l < 1e-4; not when some layer's gradient is below vanishing_grad_norm
///                                 (then the updates are small because the gradients are, and a higher rate would
///                                 not help: vanishing_gradient / unchanged_parameter / dead_relu say why).
/// weight_update_ratio (info;      one layer's u_l outside [update_ratio_low, update_ratio_high] while the median
///   warning when u_l > 1)         is inside: that layer learns at a very different speed from the rest. Above 1 it
///                                 moves by more than its own norm in one step: rewritten rather than trained.
/// poor_initialization (warning)   classification with C >= 2: |L_0 - ln C| / ln C > init_loss_tolerance (0.5) — a
///                                 fresh classifier should be near-uniform (Karpathy, "A recipe for training neural
///                                 networks": verify loss @ init); or at the first capture the activation std of
///                                 the last linear/conv layer differs from the first by more than
///                                 activation_depth_ratio (100)x.
/// symmetric_weights (critical)    in a linear/conv layer with >= 2 units and fan-in >= 2, more than half the units
///                                 have a twin with cosine > symmetry_cosine (0.9999) (all-zero units count as
///                                 twins): the units receive identical gradients and can never differ. Measured at
///                                 the first capture and every 10th after (O(units^2 x fan-in)). With a fan-in of 1
///                                 every pair of same-sign units has cosine 1, so such layers are skipped.
/// overfitting (warning)           at two evaluations in a row (early stopping's patience of 2: one evaluation of a
///                                 noisy or unstable run is not a trend): running train accuracy - validation
///                                 accuracy > overfit_gap (0.1), or validation loss > 1.2 x its best while the train
///                                 loss is below its value at the first evaluation.
/// underfitting (warning)          at the end (or at an evaluation after the loss stopped improving for a window),
///                                 train accuracy < underfit_accuracy, by default 1/C + 0.5 (1 - 1/C): the model
///                                 does not even fit the data it sees.
/// class_imbalance (warning)       after 20 C labels, largest / smallest class count > imbalance_ratio (10), or a
///                                 class never seen.
/// unchanged_parameter (warning)   at any capture, a layer's parameters have no gradient (frozen, or no path from
///                                 the loss) or an all-zero gradient; after the first step, a parameter with a
///                                 gradient has not moved at all since the start (not in the optimizer; the first
///                                 step is exempt because a warm-up may start at lr 0).
/// input_range (warning; critical  max |x| of the input batches > input_abs_max (20; standardised data rarely exceeds
///   above 10x the threshold)      ~6 sigma) and their root mean square > 3 (standardised data has RMS 1 however
///                                 heavy its tails: a sparse feature standardises to z-scores of 50 and more, as in
///                                 scikit-learn's digits) — e.g. pixels fed as 0..255.
///
/// Setup rules read TrainingSetup (monitor.h: optimizer, regularisation, loss, output layer, widths), which
/// make_monitor() fills from the Trainer; in a user's own loop they stay quiet unless the setup is given.
/// loss_output_mismatch (critical  a classification loss below 0 (a cross-entropy of probabilities never is: the
///   for nll without log_softmax,  outputs are not log-probabilities); at the first step: train.loss = nll on a
///   a negative loss, or a bounded model that does not end in log_softmax; a sigmoid/tanh/relu output layer before
///   output that cannot reach    cross_entropy or bce_with_logits (they apply their own softmax/sigmoid: a
///   the targets; else warning)    bounded logit caps confidence); a bounded output layer on a regression whose
///                                 targets fall outside its range.
/// target_scale (warning)          regression targets with root mean square > 10: an output layer initialised for
///                                 unit-scale outputs starts with errors and gradients (scale)^2 times larger
///                                 (diabetes' raw target: RMS ~165).
/// regularization_too_strong       at the first step, lr x coefficient > 1e-3 per step for sgd's weight decay, an
///   (warning)                     L2 penalty with sgd, or adamw's decoupled decay (healthy: 1e-5..1e-4, e.g. sgd
///                                 0.1 x 5e-4, adamw 1e-3 x 1e-2); a coupled coefficient >= 0.1 with an adaptive
///                                 optimizer (adam, rmsprop, adagrad normalise decay with the gradient); dropout p
///                                 >= 0.8. At a capture after the first step: the median layer's cos(update,
///                                 weights) < -0.5 — the updates only shrink the weights (a model that learns has
///                                 updates nearly orthogonal to its weights, |cos| < 0.2). lr_too_high stays quiet
///                                 when that cosine says the updates are decay, not a rate too high.
/// optimizer_hyperparameters       at the first step: eps >= 1e-3 for an adaptive optimizer (default 1e-8: a large
///   (warning)                     eps turns the step into lr x m / eps), sgd/rmsprop momentum >= 0.99 (effective
///                                 rate lr / (1 - m) >= 100 lr), adam beta1 >= 0.999, or beta2 below beta1.
/// capacity_bottleneck (warning)   at the first step, a hidden weight layer with fewer units than half the classes
///                                 (C >= 4), or of 1-2 units between layers at least 16x wider.
/// batch_lr_mismatch (warning;     batch size <= 4 and the loss oscillates or diverges, judged on means over
///   critical when diverging)      blocks of ceil(32 / B) steps (loss_oscillating and loss_diverging use the same
///                                 blocks: a batch of one example scatters like single examples, whatever the
///                                 model).
///
/// Causal links between rules (which symptom follows from which cause) are in causes.h.
///
/// Capture cost is bounded: activation statistics read at most 2^16 values per layer (the first examples of the
/// batch that fit), histograms 4096 of them.
#include <string>
#include <vector>

#include "traindx/monitor/monitor.h"

namespace traindx {

/// Steps per block of the loss rules' windows: 1 for batches of 32 examples and more (or an unknown batch size),
/// ceil(32 / B) below, so that each judged value averages at least 32 examples.
int64_t loss_block_steps(const TrainingSetup& setup);

}  // namespace traindx
