#pragma once
/// The built-in rules: formulas and default thresholds, with where each number comes from.
/// Every threshold is a `monitor.*` key; every rule can be switched off with monitor.disabled_rules.
///
/// Notation: g = global gradient L2 norm at a step; for layer l: |W_l| weight norm, |G_l| gradient norm,
/// |dW_l| norm of the optimizer update, u_l = |dW_l| / |W_l|; L_t loss at step t; mean_w(L) mean over the last
/// loss_window (w) steps; C number of classes.
///
/// nan_or_inf (critical)           loss or g non-finite. The monitor then re-runs the batch layer by layer and
///                                 names the first layer whose output is non-finite (forward), or the parameter
///                                 nearest the output whose gradient is (backward), or the loss itself.
/// exploding_gradient (warning)    g > exploding_grad_norm (1e3) or g > exploding_growth (100) x median of the first
///                                 10 steps' g. Healthy runs in our fault zoo stay within 0.05..20 (docs/benchmarks.md);
///                                 1e3 leaves two orders of margin.
/// vanishing_gradient (warning)    a layer with parameters has |G_l| < vanishing_grad_norm (1e-7, the default of
///                                 SageMaker Debugger's VanishingGradient rule), or the first layer's gradient/weight
///                                 ratio is below vanishing_depth_ratio (1e-4) times the last layer's (a depth
///                                 product of ~7 sigmoid derivatives <= 0.25 each).
/// dead_relu (warning; critical    fraction of a ReLU layer's units (features or channels) that output 0 for every
///   when all units are dead)      example of the batch > dead_fraction (0.5, SageMaker Debugger's DeadRelu
///                                 threshold_layer).
/// saturated_activation (warning)  fraction of a sigmoid/tanh layer's outputs within 1% of its bounds >
///                                 saturation_fraction (0.5, as SageMaker Debugger's threshold_layer).
/// loss_not_decreasing (warning)   after 2w steps, mean_w(L) > (1 - loss_min_improvement (0.01)) x mean of the
///                                 first w steps: no learning since the start.
/// loss_diverging (critical)       after 10 steps, the mean loss of the last 10 steps > divergence_factor (3) x the
///                                 lowest such mean so far and > the first steps' mean.
/// loss_oscillating (warning)      after 2w steps, the std of the last w losses around their least-squares line,
///                                 divided by their mean, > oscillation_cv (0.5), with the mean above 5% of the
///                                 initial loss (noise around a loss near zero does not count). Detrending keeps a
///                                 fast-falling early loss from counting; minibatch noise of healthy runs stays
///                                 below ~0.3 (fault zoo, docs/benchmarks.md).
/// lr_too_high (warning; critical  median over layers of u_l > update_ratio_high (0.1; Karpathy's rule of thumb
///   when > 10x the threshold or   puts healthy updates near 1e-3 of the weights), or the loss diverges or
///   with divergence)              oscillates while u_l > 0.01.
/// lr_too_low (warning)            median u_l < update_ratio_low (1e-6), or the loss does not decrease while
///                                 median u_l < 1e-4.
/// weight_update_ratio (info)      one layer's u_l outside [update_ratio_low, update_ratio_high] while the median
///                                 is inside: that layer learns at a very different speed from the rest.
/// poor_initialization (warning)   classification with C >= 2: |L_0 - ln C| / ln C > init_loss_tolerance (0.5) — a
///                                 fresh classifier should be near-uniform (Karpathy, "A recipe for training neural
///                                 networks": verify loss @ init); or at the first capture the activation std of
///                                 the last layer differs from the first by more than activation_depth_ratio (100)x.
/// symmetric_weights (critical)    in a linear/conv layer with >= 2 units, more than half the units have a twin
///                                 with cosine > symmetry_cosine (0.9999) (all-zero units count as twins): the
///                                 units receive identical gradients and can never differ.
/// overfitting (warning)           at an evaluation, running train accuracy - validation accuracy > overfit_gap
///                                 (0.1), or validation loss > 1.2 x its best while the train loss still falls.
/// underfitting (warning)          at the end (or at an evaluation after the loss stopped improving), train
///                                 accuracy < underfit_accuracy, by default 1/C + 0.5 (1 - 1/C): the model does not
///                                 even fit the data it sees.
/// class_imbalance (warning)       after 20 C labels, largest / smallest class count > imbalance_ratio (10), or a
///                                 class never seen.
/// unchanged_parameter (warning)   at a capture after step 0, a parameter has no gradient (frozen, or no path from
///                                 the loss), an all-zero gradient, or has not moved at all since the start (not in
///                                 the optimizer).
/// input_range (warning; critical  max |x| of an input batch > input_abs_max (20; standardised data rarely exceeds
///   above 10x the threshold)      ~6 sigma) — e.g. pixels fed as 0..255.
#include <string>
#include <vector>

#include "traindx/monitor/monitor.h"
