// Background checkpoints (CheckpointWriter, CheckpointCallback with checkpoint.background): the checkpoint holds
// the state at the moment save() returned, whatever training does meanwhile; it equals a checkpoint written in the
// training thread (golden probe outputs included, bit for bit); saving draws no random numbers, so a run that
// checkpoints every step ends with the same weights as one that never does; failures reach the caller.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>

#include "test_support.h"
#include "traindx/checkpoint/checkpoint.h"
#include "traindx/core/error.h"

namespace traindx {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

// BatchNorm (buffers), dropout (random numbers in training), Adam (optimizer slots with step counts).
const char* const kToml = R"(
[run]
seed = 5
[data]
source = "fashion-mnist"
max_train = 256
max_test = 64
[model]
layers = [
  { type = "conv2d", out = 4, kernel = 3, padding = 1 },
  { type = "batchnorm" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out = 16 },
  { type = "relu" },
  { type = "dropout", p = 0.3 },
  { type = "linear" },
]
[train]
optimizer = "adam"
lr = 0.01
batch_size = 32
max_steps = 6
[checkpoint]
probe_size = 16
keep_last = 100
)";

Config config(const std::vector<std::string>& sets = {}) {
  Config c = Config::from_string(kToml, "writer-test.toml");
  for (const auto& s : sets) c.set(s);
  return c;
}

void take_steps(Trainer& trainer, int n) {
  const auto& data = trainer.data();
  for (int i = 0; i < n; ++i) trainer.train_step(data.train_x.slice(0, 32 * i, 32 * (i + 1)),
                                                 data.train_y.slice(0, 32 * i, 32 * (i + 1)));
}

std::map<std::string, torch::Tensor> by_name(const std::vector<NamedTensor>& tensors) {
  return {tensors.begin(), tensors.end()};
}

TEST(CheckpointWriterTest, HoldsTheStateAtSaveTimeAndEqualsAnInThreadSave) {
  TempDir dir;
  const Config c = config();
  Trainer trainer(c);
  take_steps(trainer, 3);
  const std::string in_thread = save_checkpoint(dir.file("sync"), trainer, c, {}, Json::object(),
                                                CheckpointOptions::from_config(c));

  CheckpointWriter writer(dir.file("background"), CheckpointOptions::from_config(c));
  const std::string background = writer.save(trainer, c);
  // Training goes on before the background save has finished: the checkpoint must not see these steps.
  take_steps(trainer, 2);
  EXPECT_EQ(writer.wait(), background);

  const Checkpoint a = load_checkpoint(in_thread);
  const Checkpoint b = load_checkpoint(background);
  EXPECT_EQ(a.step(), 3);
  EXPECT_EQ(b.step(), 3);
  // Same tensors, same hashes: model, optimizer slots, RNG state and the golden probe's outputs, which the
  // background save computed on the model's copy in another thread.
  EXPECT_EQ(a.manifest["tensors"], b.manifest["tensors"]);
  EXPECT_EQ(a.manifest["optimizer"], b.manifest["optimizer"]);
  EXPECT_EQ(a.manifest["trainer"], b.manifest["trainer"]);
  const auto saved = by_name(b.model);
  bool moved = false;
  for (const auto& [name, t] : trainer.model().named_parameters()) moved = moved || !torch::equal(t, saved.at(name));
  EXPECT_TRUE(moved) << "the two later steps changed no parameter, so the test proves nothing";
  std::ifstream latest(dir.file("background") + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, checkpoint_dir_name(3));
}

TEST(CheckpointWriterTest, CheckpointingEveryStepDoesNotChangeTraining) {
  TempDir dir;
  const Config c = config({"checkpoint.every_steps=1"});
  Trainer plain(c);
  plain.fit();

  Trainer checkpointed(c);
  auto callback = std::make_shared<CheckpointCallback>(dir.file("ckpt"), checkpointed, c,
                                                       CheckpointOptions::from_config(c));
  checkpointed.add_callback(callback);
  checkpointed.fit();
  EXPECT_EQ(callback->last_saved(), dir.file("ckpt") + "/" + checkpoint_dir_name(6));

  const auto expected = by_name(plain.model().named_parameters());
  for (const auto& [name, t] : checkpointed.model().named_parameters())
    EXPECT_TRUE(torch::equal(t, expected.at(name))) << name << " differs after checkpointing every step";
  // Every step's checkpoint is complete and loads with its hashes checked.
  for (int step = 1; step <= 6; ++step)
    EXPECT_EQ(load_checkpoint(dir.file("ckpt") + "/" + checkpoint_dir_name(step)).step(), step);
}

TEST(CheckpointWriterTest, BackgroundFailureIsRethrownByWait) {
  TempDir dir;
  const Config c = config();
  Trainer trainer(c);
  take_steps(trainer, 1);
  std::ofstream(dir.file("not-a-dir")) << "a file where the checkpoint root should be";
  CheckpointWriter writer(dir.file("not-a-dir"), CheckpointOptions::from_config(c));
  writer.save(trainer, c);
  EXPECT_THROW(writer.wait(), IoError);
  // The writer stays usable after a failure.
  EXPECT_EQ(writer.wait(), "");
}

TEST(CheckpointWriterTest, CloneCopiesValuesAndDrawsNoRandomNumbers) {
  const Config c = config();
  Trainer trainer(c);
  take_steps(trainer, 1);
  const torch::Tensor before = cpu_rng_state();
  const std::shared_ptr<Model> copy = trainer.model().clone();
  ASSERT_NE(copy, nullptr);
  EXPECT_TRUE(torch::equal(before, cpu_rng_state()));
  const auto original = by_name(trainer.model().named_parameters());
  for (const auto& [name, t] : copy->named_parameters()) {
    EXPECT_TRUE(torch::equal(t, original.at(name))) << name;
    EXPECT_NE(t.data_ptr(), original.at(name).data_ptr()) << name << " shares memory with the original";
  }
  const auto buffers = by_name(trainer.model().named_buffers());
  for (const auto& [name, t] : copy->named_buffers()) EXPECT_TRUE(torch::equal(t, buffers.at(name))) << name;
}

// Loads of 1 MB and more read files on LibTorch's inter-op pool. Called from the pool's only thread, a load that
// waited for a helper queued behind itself would hang; it must read those files itself instead.
TEST(CheckpointLoadTest, LoadsFromTheInterOpPoolsOnlyThread) {
  TempDir dir;
  const Config c = config({R"(model.layers=[{type="flatten"}, {type="linear", out=512}, {type="relu"}, {type="linear"}])"});
  Trainer trainer(c);
  take_steps(trainer, 1);
  const std::string saved = save_checkpoint(dir.file("ckpt"), trainer, c, {}, Json::object(),
                                            CheckpointOptions::from_config(c));
  ASSERT_GT(fs::file_size(saved + "/model.safetensors"), size_t{1} << 20);
  at::set_num_interop_threads(1);  // this test process has not started the pool yet
  auto loaded = std::make_shared<std::promise<int64_t>>();
  std::future<int64_t> step = loaded->get_future();
  at::launch([loaded, saved] {
    try {
      loaded->set_value(load_checkpoint(saved).step());
    } catch (...) {
      loaded->set_exception(std::current_exception());
    }
  });
  ASSERT_EQ(step.wait_for(std::chrono::seconds(60)), std::future_status::ready) << "the load deadlocked";
  EXPECT_EQ(step.get(), 1);
}

}  // namespace
}  // namespace traindx
