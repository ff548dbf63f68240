// Your own LibTorch training loop, with traindx's pieces where they help: data loading with a fitted
// preprocessing pipeline, a model from a layer list, a learning-rate schedule whose state is just the step, metrics,
// and the training monitor watching every step (docs/monitor.md). Build it against an installed traindx with
// examples/consumer/CMakeLists.txt, or in-tree.
//
//   user_loop [FASHION_MNIST_DIR] [STEPS]
#include <torch/torch.h>
#include <traindx/traindx.h>

#include <iostream>

int main(int argc, char** argv) try {
  traindx::DataOptions data_options;
  data_options.source = "fashion-mnist";
  if (argc > 1) data_options.path = argv[1];
  data_options.max_train = 6000;  // a quick example; drop this line for the full set
  data_options.seed = 7;
  const int64_t steps = argc > 2 ? std::stoll(argv[2]) : 200;

  traindx::seed_everything(7);
  traindx::PreparedData data = traindx::prepare_data(data_options);

  traindx::ModelOptions model_options;
  model_options.layers = traindx::Json::parse(R"([
      {"type": "flatten"}, {"type": "linear", "out": 128}, {"type": "relu"}, {"type": "linear"}])");
  auto model = traindx::build_model(model_options, data.info.input_shape, data.info.num_classes);

  // A plain LibTorch optimizer over the model's parameters.
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-3));
  traindx::ScheduleOptions schedule_options;
  schedule_options.name = "cosine";
  traindx::LrSchedule schedule(schedule_options, 1e-3, steps);
  traindx::ShuffleBatcher batcher(data.train_x.size(0), 64, /*seed=*/7);

  // The monitor needs only the named parameters. The task sharpens the loss-at-init and class checks, the layer
  // types the dead-unit and saturation checks, and a forward function lets it trace a non-finite loss back to the
  // first layer that produced it.
  traindx::Monitor monitor(traindx::MonitorOptions(), model->named_parameters());
  monitor.set_task(data.info.task, data.info.num_classes);
  std::vector<std::pair<std::string, std::string>> layer_types;
  for (const auto& row : model->summary()) layer_types.emplace_back(row.name, row.type);
  monitor.set_layers(layer_types);
  monitor.set_forward([&model](const torch::Tensor& x, const traindx::LayerTap& tap) {
    torch::NoGradGuard no_grad;
    return model->forward_with_taps(x, tap);
  });
  monitor.set_listener([](const traindx::Finding& f) {
    std::cout << "[" << traindx::severity_name(f.severity) << "] " << f.rule << ": " << f.message << "\n";
  });

  model->train(true);
  for (int64_t step = 0; step < steps; ++step) {
    const auto batch = batcher.next();
    auto x = data.train_x.index_select(0, batch.indices);
    auto y = data.train_y.index_select(0, batch.indices);
    const double lr = schedule.lr_at(step);
    traindx::set_learning_rate(optimizer, lr);
    optimizer.zero_grad();
    // Every monitor.interval steps the monitor wants per-layer activations: tap them on the way through. For a
    // custom module, call monitor.record_activation(step, "name", tensor) inside its forward() instead.
    torch::Tensor logits;
    if (monitor.wants_activations(step)) {
      logits = model->forward_with_taps(
          x, [&](const std::string& layer, const torch::Tensor& out) { monitor.record_activation(step, layer, out); });
    } else {
      logits = model->forward(x);
    }
    auto loss = torch::nn::functional::cross_entropy(logits, y);
    loss.backward();
    monitor.after_backward(step, loss.item<double>(), x, y, logits.detach(), lr);
    optimizer.step();
    monitor.after_step(step);
    if (auto reason = monitor.stop_requested()) {
      std::cout << "stopping: " << *reason << "\n";
      break;
    }
    if (step % 50 == 0) std::cout << "step " << step << " loss " << loss.item<double>() << "\n";
    if (step % 100 == 99) {
      // Validation metrics let the monitor compare train and validation (overfitting, underfitting).
      torch::NoGradGuard no_grad;
      model->train(false);
      traindx::MetricAccumulator val(data.info.task, data.info.num_classes);
      auto val_logits = model->forward(data.val_x);
      val.add(val_logits, data.val_y, torch::nn::functional::cross_entropy(val_logits, data.val_y).item<double>());
      model->train(true);
      const auto metrics = val.result();
      monitor.on_evaluation(step, {{"val_accuracy", metrics["accuracy"]}, {"val_loss", metrics["loss"]}});
    }
  }
  monitor.on_train_end(steps);

  model->train(false);
  torch::NoGradGuard no_grad;
  traindx::MetricAccumulator metrics(data.info.task, data.info.num_classes);
  auto logits = model->forward(data.test_x);
  metrics.add(logits, data.test_y, torch::nn::functional::cross_entropy(logits, data.test_y).item<double>());
  std::cout << "test accuracy " << metrics.result()["accuracy"].get<double>() << "\n";
  std::cout << "findings: " << monitor.findings().to_json().dump(2) << "\n";
  return monitor.findings().has_critical() ? 1 : 0;
} catch (const traindx::Error& e) {
  std::cerr << "user_loop: " << e.what() << "\n";
  return 2;
}
