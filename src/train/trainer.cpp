#include "traindx/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include "traindx/core/environment.h"
#include "traindx/core/error.h"

namespace traindx {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Final train metrics are measured on at most this many training examples: enough for a stable train/val gap,
// cheap next to training itself.
constexpr int64_t kTrainEvalExamples = 10000;
// Evaluation batch: 1000 images made the CNN's feature maps 100 MB per layer, and evaluation ran at 0.27 ms per
// example against 0.14-0.15 at 128-256 (memory traffic and page faults, not arithmetic).
constexpr int64_t kEvalBatch = 256;

Scalars flat_scalars(const Json& metrics, const std::string& prefix) {
  Scalars out;
  for (auto it = metrics.begin(); it != metrics.end(); ++it)
    if (it.value().is_number()) out.emplace_back(prefix + it.key(), it.value().get<double>());
  return out;
}

}  // namespace

TrainOptions TrainOptions::from_config(const Config& c) {
  TrainOptions o;
  o.loss = c.get_string("train.loss");
  o.optimizer = OptimizerOptions::from_config(c);
  o.schedule = ScheduleOptions::from_config(c);
  o.l1 = c.get_double("train.l1");
  o.l2 = c.get_double("train.l2");
  o.batch_size = c.get_int("train.batch_size");
  o.epochs = c.get_int("train.epochs");
  o.max_steps = c.get_int("train.max_steps");
  o.clip_grad_norm = c.get_double("train.clip_grad_norm");
  o.clip_grad_value = c.get_double("train.clip_grad_value");
  o.huber_delta = c.get_double("train.huber_delta");
  o.eval_every = c.get_int("train.eval_every");
  o.eval_examples = c.get_int("train.eval_examples");
  o.early_stopping_metric = c.get_string("train.early_stopping_metric");
  o.early_stopping_patience = c.get_int("train.early_stopping_patience");
  o.early_stopping_min_delta = c.get_double("train.early_stopping_min_delta");
  o.topk = c.get_int("train.topk");
  o.log_every = c.get_int("train.log_every");
  o.seed = static_cast<uint64_t>(c.get_int("run.seed"));
  o.device = c.get_string("run.device");
  return o;
}

bool EarlyStopping::lower_is_better() const {
  return metric.find("loss") != std::string::npos || metric.find("mse") != std::string::npos ||
         metric.find("mae") != std::string::npos;
}

bool EarlyStopping::update(double value, int64_t step) {
  const bool improved = !best || (lower_is_better() ? value < *best - min_delta : value > *best + min_delta);
  if (improved) {
    best = value;
    best_step = step;
    bad_evaluations = 0;
    return false;
  }
  return ++bad_evaluations >= patience;
}

Json EarlyStopping::to_json() const {
  return {{"metric", metric},       {"patience", patience},   {"min_delta", min_delta},
          {"best", best ? Json(*best) : Json()}, {"best_step", best_step}, {"bad_evaluations", bad_evaluations}};
}

void EarlyStopping::load_json(const Json& doc) {
  metric = doc.at("metric").get<std::string>();
  patience = doc.at("patience").get<int64_t>();
  min_delta = doc.at("min_delta").get<double>();
  best = doc.at("best").is_null() ? std::nullopt : std::optional<double>(doc.at("best").get<double>());
  best_step = doc.at("best_step").get<int64_t>();
  bad_evaluations = doc.at("bad_evaluations").get<int64_t>();
}

Json TrainResult::summary() const {
  return {{"status", status},
          {"stop_reason", stop_reason},
          {"steps", steps},
          {"epochs_completed", epochs_completed},
          {"wall_seconds", wall_seconds},
          {"data_seconds", data_seconds},
          {"compute_seconds", compute_seconds},
          {"train", train_metrics},
          {"val", val_metrics},
          {"test", test_metrics}};
}

torch::Device parse_device(const std::string& name) {
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    TRAINDX_FAIL(ConfigError, "run.device = \"{}\" is not a device; use \"cpu\", \"cuda\" or \"cuda:N\"", name);
  }
  TRAINDX_CHECK(!device.is_cuda() || torch::cuda::is_available(), ConfigError,
                "run.device = \"{}\" but this LibTorch build sees no CUDA device; use run.device = \"cpu\"", name);
  return device;
}

Trainer::Trainer(const Config& config) : options_(TrainOptions::from_config(config)) {
  apply_runtime_settings(config.get_int("run.threads"), config.get_bool("run.deterministic"));
  seed_everything(options_.seed);
  data_ = prepare_data(DataOptions::from_config(config));
  const auto model_options = ModelOptions::from_config(config);
  if (!model_options.torchscript.empty()) {
    model_ = load_torchscript_model(model_options.torchscript);
  } else {
    TRAINDX_CHECK(!model_options.layers.empty(), ConfigError,
                  "{}: model.layers is empty; describe the network (see examples/*.toml and docs/model.md) or set "
                  "model.torchscript",
                  config.origin("model.layers"));
    const int64_t outputs = data_.info.task == Task::Classification ? data_.info.num_classes : 1;
    // Seeded right before building so weights depend on the seed alone, not on what data loading consumed.
    seed_everything(options_.seed);
    model_ = build_model(model_options, data_.info.input_shape, outputs);
  }
  dtype_ = model_options.dtype == "float64" ? torch::kFloat64 : torch::kFloat32;
  init_common();
}

Trainer::Trainer(TrainOptions options, PreparedData data, std::shared_ptr<Model> model)
    : options_(std::move(options)), data_(std::move(data)), model_(std::move(model)) {
  TRAINDX_CHECK(model_ != nullptr, ConfigError, "Trainer needs a model");
  const auto params = model_->named_parameters();
  if (!params.empty()) dtype_ = params.front().second.scalar_type();
  init_common();
}

void Trainer::init_common() {
  device_ = parse_device(options_.device);
  model_->to(device_, dtype_);
  loss_ = resolve_loss(options_.loss, data_.info.task);
  TRAINDX_CHECK(data_.train_x.defined() && data_.train_x.size(0) > 0, DataError,
                "the training split is empty; check data.path, data.max_train and data.val_fraction");
  optimizer_ = make_optimizer(options_.optimizer, model_->parameters());
  batcher_ = std::make_unique<ShuffleBatcher>(data_.train_x.size(0), options_.batch_size,
                                              options_.seed ^ 0x5DEECE66DULL, /*shuffle=*/true);
  schedule_ = std::make_unique<LrSchedule>(options_.schedule, options_.optimizer.lr, std::max<int64_t>(1, total_steps()));
  early_stopping_.metric = options_.early_stopping_metric;
  early_stopping_.patience = options_.early_stopping_patience;
  early_stopping_.min_delta = options_.early_stopping_min_delta;
}

void Trainer::add_callback(std::shared_ptr<TrainerCallback> callback) { callbacks_.push_back(std::move(callback)); }

void Trainer::set_store(RunStore* store, std::string run_id) {
  store_ = store;
  run_id_ = std::move(run_id);
}

void Trainer::set_progress(ProgressSink sink) { progress_ = std::move(sink); }

int64_t Trainer::total_steps() const {
  const int64_t per_epoch = batcher_ ? batcher_->batches_per_epoch()
                                     : (data_.train_x.size(0) + options_.batch_size - 1) / options_.batch_size;
  int64_t total = per_epoch * options_.epochs;
  if (options_.max_steps > 0) total = std::min(total, options_.max_steps);
  return total;
}

void Trainer::log_scalars(int64_t step, const Scalars& values) {
  if (store_) store_->log_scalars(run_id_, step, values);
}

StepContext Trainer::train_step(const torch::Tensor& x, const torch::Tensor& y) {
  StepContext ctx;
  ctx.step = step_;
  ctx.epoch = batcher_->state().epoch;
  ctx.lr = schedule_->lr_at(step_);
  ctx.model = model_.get();
  ctx.optimizer = optimizer_.get();
  set_learning_rate(*optimizer_, ctx.lr);
  optimizer_->zero_grad();

  bool taps = false;
  for (auto& cb : callbacks_) taps = cb->wants_activations(step_) || taps;
  torch::Tensor output;
  if (taps) {
    const int64_t step = step_;
    output = model_->forward_with_taps(x, [&](const std::string& layer, const torch::Tensor& out) {
      for (auto& cb : callbacks_) cb->on_activation(step, layer, out);
    });
  } else {
    output = model_->forward(x);
  }
  torch::Tensor loss = compute_loss(loss_, output, y, options_.huber_delta);
  torch::Tensor total = loss;
  if (options_.l1 > 0 || options_.l2 > 0) {
    // Penalties apply to weights (tensors of rank >= 2), not to biases and norm scales, as is conventional.
    for (const auto& [name, p] : model_->named_parameters()) {
      if (p.dim() < 2) continue;
      if (options_.l1 > 0) total = total + options_.l1 * p.abs().sum();
      if (options_.l2 > 0) total = total + 0.5 * options_.l2 * p.pow(2).sum();
    }
  }
  total.backward();
  ctx.loss = loss.item<double>();
  ctx.inputs = x;
  ctx.targets = y;
  ctx.outputs = output.detach();
  for (auto& cb : callbacks_) cb->on_after_backward(ctx);

  const auto params = model_->parameters();
  if (options_.clip_grad_value > 0) torch::nn::utils::clip_grad_value_(params, options_.clip_grad_value);
  if (options_.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, options_.clip_grad_norm);
  optimizer_->step();
  ++step_;
  for (auto& cb : callbacks_) cb->on_step_end(ctx);
  return ctx;
}

Json Trainer::evaluate(const torch::Tensor& x, const torch::Tensor& y) {
  const bool was_training = model_->is_training();
  model_->train(false);
  torch::NoGradGuard no_grad;
  MetricAccumulator acc(data_.info.task, data_.info.num_classes, options_.topk);
  for (int64_t start = 0; start < x.size(0); start += kEvalBatch) {
    const int64_t end = std::min(x.size(0), start + kEvalBatch);
    auto xb = x.slice(0, start, end).to(device_, dtype_);
    auto yb = y.slice(0, start, end).to(device_);
    auto out = model_->forward(xb);
    auto loss = compute_loss(loss_, out, yb, options_.huber_delta);
    acc.add(out, yb, loss.item<double>());
  }
  model_->train(was_training);
  return acc.count() > 0 ? acc.result() : Json::object();
}

bool Trainer::evaluate_and_maybe_stop(int64_t step) {
  if (!data_.val_x.defined() || data_.val_x.size(0) == 0) return false;
  const int64_t size = data_.val_x.size(0);
  Json metrics;
  if (options_.eval_examples > 0 && options_.eval_examples < size) {
    // Evenly spaced through the split, which is in file order: a CSV sorted by class keeps its proportions.
    const auto index = (torch::arange(options_.eval_examples, torch::kLong) * size).div(options_.eval_examples, "floor");
    metrics = evaluate(data_.val_x.index_select(0, index), data_.val_y.index_select(0, index));
  } else {
    metrics = evaluate(data_.val_x, data_.val_y);
  }
  Json prefixed = Json::object();
  for (auto it = metrics.begin(); it != metrics.end(); ++it) prefixed["val_" + it.key()] = it.value();
  last_val_metrics_ = metrics;
  log_scalars(step, flat_scalars(metrics, "val_"));
  for (auto& cb : callbacks_) cb->on_evaluation(step, prefixed);
  if (early_stopping_.metric.empty()) return false;
  TRAINDX_CHECK(prefixed.contains(early_stopping_.metric) && prefixed[early_stopping_.metric].is_number(),
                ConfigError, "train.early_stopping_metric = \"{}\" is not a validation metric; available: {}",
                early_stopping_.metric, [&] {
                  std::string names;
                  for (auto it = prefixed.begin(); it != prefixed.end(); ++it)
                    if (it.value().is_number()) names += (names.empty() ? "" : ", ") + it.key();
                  return names;
                }());
  return early_stopping_.update(prefixed[early_stopping_.metric].get<double>(), step);
}

TrainResult Trainer::fit() {
  TrainResult result;
  const auto t_start = Clock::now();
  const int64_t total = total_steps();
  model_->train(true);
  for (auto& cb : callbacks_) cb->on_train_begin(*model_, *optimizer_);

  result.status = "completed";
  const int64_t first_step = step_;
  double ema_loss = std::numeric_limits<double>::quiet_NaN();
  while (step_ < total) {
    const auto t_data = Clock::now();
    const Batch batch = batcher_->next();
    auto x = data_.train_x.index_select(0, batch.indices).to(device_, dtype_);
    auto y = data_.train_y.index_select(0, batch.indices).to(device_);
    result.data_seconds += seconds_since(t_data);

    const auto t_compute = Clock::now();
    const StepContext ctx = train_step(x, y);
    result.compute_seconds += seconds_since(t_compute);
    log_scalars(ctx.step, {{"loss", ctx.loss}, {"lr", ctx.lr}});
    ema_loss = std::isnan(ema_loss) ? ctx.loss : 0.9 * ema_loss + 0.1 * ctx.loss;

    if (progress_) {
      Progress p;
      p.step = step_;
      p.total_steps = total;
      p.epoch = ctx.epoch;
      p.loss = ema_loss;
      p.lr = ctx.lr;
      const double elapsed = seconds_since(t_start);
      p.steps_per_second = elapsed > 0 ? static_cast<double>(step_ - first_step) / elapsed : 0.0;
      p.eta_seconds = p.steps_per_second > 0 ? static_cast<double>(total - step_) / p.steps_per_second : 0.0;
      progress_(p);
    }

    if (!std::isfinite(ctx.loss)) {
      result.status = "failed";
      result.stop_reason = fmt::format("the loss became non-finite ({}) at step {}", ctx.loss, ctx.step);
      break;
    }
    if (batch.last_in_epoch) ++result.epochs_completed;
    const bool eval_now = options_.eval_every > 0 ? (step_ % options_.eval_every == 0) : batch.last_in_epoch;
    if (eval_now && evaluate_and_maybe_stop(ctx.step)) {
      result.status = "stopped";
      result.stop_reason = fmt::format("early stopping: {} did not improve for {} evaluations (best {} at step {})",
                                       early_stopping_.metric, early_stopping_.patience, *early_stopping_.best,
                                       early_stopping_.best_step);
      break;
    }
    for (auto& cb : callbacks_) cb->on_iteration_end(step_);
    bool stop = false;
    for (auto& cb : callbacks_) {
      if (auto reason = cb->stop_requested()) {
        result.status = "stopped";
        result.stop_reason = *reason;
        stop = true;
        break;
      }
    }
    if (stop) break;
  }
  result.steps = step_;
  result.wall_seconds = seconds_since(t_start);

  // Final metrics on all three splits (train on a fixed-size prefix of the shuffled split).
  const int64_t n_train = std::min<int64_t>(data_.train_x.size(0), kTrainEvalExamples);
  result.train_metrics = evaluate(data_.train_x.slice(0, 0, n_train), data_.train_y.slice(0, 0, n_train));
  if (data_.val_x.defined() && data_.val_x.size(0) > 0) result.val_metrics = evaluate(data_.val_x, data_.val_y);
  if (data_.test_x.defined() && data_.test_x.size(0) > 0) result.test_metrics = evaluate(data_.test_x, data_.test_y);
  log_scalars(step_, flat_scalars(result.val_metrics, "final_val_"));
  log_scalars(step_, flat_scalars(result.test_metrics, "final_test_"));
  if (store_) store_->flush();
  if (progress_) {
    Progress p;
    p.step = step_;
    p.total_steps = total;
    p.final = true;
    p.loss = ema_loss;
    progress_(p);
  }
  for (auto& cb : callbacks_) cb->on_train_end(step_, result.status);
  return result;
}

}  // namespace traindx
