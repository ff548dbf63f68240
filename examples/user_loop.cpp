// Your own LibTorch training loop, with traindx's pieces where they help: data loading with a fitted
// preprocessing pipeline, a model from a layer list, a learning-rate schedule whose state is just the step, and
// metrics. Build it against an installed traindx with examples/consumer/CMakeLists.txt, or in-tree.
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

  model->train(true);
  for (int64_t step = 0; step < steps; ++step) {
    const auto batch = batcher.next();
    auto x = data.train_x.index_select(0, batch.indices);
    auto y = data.train_y.index_select(0, batch.indices);
    traindx::set_learning_rate(optimizer, schedule.lr_at(step));
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    optimizer.step();
    if (step % 50 == 0) std::cout << "step " << step << " loss " << loss.item<double>() << "\n";
  }

  model->train(false);
  torch::NoGradGuard no_grad;
  traindx::MetricAccumulator metrics(data.info.task, data.info.num_classes);
  auto logits = model->forward(data.test_x);
  metrics.add(logits, data.test_y, torch::nn::functional::cross_entropy(logits, data.test_y).item<double>());
  std::cout << "test accuracy " << metrics.result()["accuracy"].get<double>() << "\n";
  return 0;
} catch (const traindx::Error& e) {
  std::cerr << "user_loop: " << e.what() << "\n";
  return 2;
}
