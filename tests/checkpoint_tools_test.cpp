// Checkpoint tools: inspect, diff, import and export, and interop with Debian's python3-torch (a model saved in
// Python predicts the same in traindx; a traindx export reads back in Python as the same tensors).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "test_support.h"
#include "traindx/checkpoint/tools.h"
#include "traindx/core/error.h"
#include "traindx/store/run_store.h"

namespace traindx {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr const char* kPython = "/usr/bin/python3";

// A small CNN whose layer names (conv1, bn1, fc1, fc2) a Python module can reproduce attribute by attribute.
const char* const kCnnToml = R"(
[run]
name = "tools-test"
seed = 3
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
  { type = "linear" },
]
[train]
optimizer = "adam"
lr = 0.01
batch_size = 32
max_steps = 4
[checkpoint]
probe_size = 16
)";

Config cnn_config(const std::vector<std::string>& sets = {}) {
  Config c = Config::from_string(kCnnToml, "tools-test.toml");
  for (const auto& s : sets) c.set(s);
  return c;
}

/// Trains per `config` and saves one checkpoint under `root`; returns the checkpoint directory.
std::string train_and_save(const Config& config, const std::string& root) {
  Trainer trainer(config);
  trainer.fit();
  return save_checkpoint(root, trainer, config, {}, Json{{"val_loss", 1.5}}, CheckpointOptions::from_config(config));
}

void expect_checkpoint_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected CheckpointError, got: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected CheckpointError containing '" << part << "', nothing thrown";
}

bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(ca.numel()) * ca.element_size()) == 0;
}

const TensorDifference* find_row(const CheckpointDiff& d, const std::string& file, const std::string& name) {
  for (const auto& t : d.tensors)
    if (t.file == file && t.name == name) return &t;
  return nullptr;
}

// Shared by every test: one trained checkpoint (4 Adam steps), so each test does not retrain.
class CheckpointToolsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    base_ = new std::string(train_and_save(cnn_config(), dir_->file("base")));
  }
  static void TearDownTestSuite() {
    delete base_;
    delete dir_;
  }
  static TempDir* dir_;
  static std::string* base_;
};
TempDir* CheckpointToolsTest::dir_ = nullptr;
std::string* CheckpointToolsTest::base_ = nullptr;

// ---- inspect -----------------------------------------------------------------------------------------------------

TEST_F(CheckpointToolsTest, InspectDescribesEveryPartOfTheState) {
  const Json doc = inspect_checkpoint(dir_->file("base"));  // a root: resolved through `latest`
  EXPECT_EQ(doc["kind"], "traindx.ckpt.inspect");
  EXPECT_EQ(doc["checkpoint"], *base_);
  EXPECT_EQ(doc["step"], 4);
  EXPECT_EQ(doc["optimizer"]["name"], "adam");
  // Adam keeps two moments per parameter: conv1, bn1, fc1, fc2 weights and biases.
  EXPECT_EQ(doc["optimizer"]["slots"]["exp_avg"], 8);
  EXPECT_EQ(doc["optimizer"]["slots"]["exp_avg_sq"], 8);
  EXPECT_EQ(doc["optimizer"]["steps"]["max"], 4);
  EXPECT_EQ(doc["schedule"]["step"], 4);
  EXPECT_TRUE(doc["schedule"]["next_lr"].is_number());
  EXPECT_EQ(doc["batcher"]["position"], 128);
  EXPECT_EQ(doc["data"]["source"], "fashion-mnist");
  EXPECT_EQ(doc["probe"]["examples"], 16);
  EXPECT_EQ(doc["metrics"]["val_loss"], 1.5);
  EXPECT_EQ(doc["model"]["layers"].size(), 8u);

  // The tensor table carries the verified hashes, which are the hashes of the tensors themselves.
  const Checkpoint c = load_checkpoint(*base_);
  const Json& rows = doc["tensors"]["model"];
  ASSERT_EQ(rows.size(), c.model.size());
  std::map<std::string, torch::Tensor> by_name(c.model.begin(), c.model.end());
  for (const auto& row : rows) EXPECT_EQ(row["hash"], hash_tensor(by_name.at(row["name"].get<std::string>())));
  // Rows follow the model's layers (the file holds them in alignment order): weight, bias, then buffers.
  std::vector<std::string> names;
  for (const auto& row : rows) names.push_back(row["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias",
                                             "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
                                             "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}));
  EXPECT_EQ(rows[0]["shape"], Json({4, 1, 3, 3}));
  EXPECT_EQ(doc["tensors"]["optimizer"][0]["name"], "conv1.weight/exp_avg");
  EXPECT_EQ(doc["tensors"]["rng"][0]["bytes"], 5056);

  const std::string text = render_inspection(doc);
  for (const char* part : {"step        4", "adam: exp_avg x8, exp_avg_sq x8", "conv1.weight", "bn1.running_mean",
                           "fc2.bias/exp_avg", "16 examples from val", "hashes verified", "rng.safetensors"})
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
}

TEST_F(CheckpointToolsTest, InspectRefusesCorruptTruncatedAndTamperedCheckpoints) {
  auto copy = [&](const std::string& name) {
    const std::string to = dir_->file(name);
    fs::remove_all(to);
    fs::copy(*base_, to, fs::copy_options::recursive);
    return to;
  };
  {
    const std::string c = copy("flipped");
    std::string bytes = read_file(c + "/model.safetensors");
    bytes[bytes.size() - 3] = static_cast<char>(bytes[bytes.size() - 3] ^ 0x01);
    write_file_atomic(c + "/model.safetensors", bytes);
    expect_checkpoint_error([&] { inspect_checkpoint(c); }, "does not match its hash");
  }
  {
    const std::string c = copy("truncated");
    const std::string bytes = read_file(c + "/optimizer.safetensors");
    write_file_atomic(c + "/optimizer.safetensors", bytes.substr(0, bytes.size() / 2));
    expect_checkpoint_error([&] { inspect_checkpoint(c); }, "optimizer.safetensors");
  }
  {
    const std::string c = copy("edited");
    std::string manifest = read_file(c + "/manifest.json");
    const auto at = manifest.find("\"step\": 4");
    ASSERT_NE(at, std::string::npos);
    manifest.replace(at, 9, "\"step\": 5");
    write_file_atomic(c + "/manifest.json", manifest);
    expect_checkpoint_error([&] { inspect_checkpoint(c); }, "manifest_hash does not match");
  }
  expect_checkpoint_error([&] { inspect_checkpoint(dir_->file("nothing-here")); }, "is not a checkpoint");
}

// ---- diff --------------------------------------------------------------------------------------------------------

TEST_F(CheckpointToolsTest, DiffOfTwoRunsOfTheSameConfigIsIdentical) {
  // Deterministic CPU training: the same config trained twice gives bit-identical state. run.name only says where
  // the run goes, so it shows up as a bookkeeping difference that does not count.
  const std::string again = train_and_save(cnn_config({"run.name=renamed"}), dir_->file("again"));
  const CheckpointDiff d = diff_checkpoints(*base_, again);
  EXPECT_TRUE(d.identical()) << render_diff(d);
  EXPECT_EQ(d.exit_code(), 0);
  ASSERT_TRUE(d.config.contains("run.name"));
  EXPECT_FALSE(d.config["run.name"]["affects_state"].get<bool>());
  EXPECT_TRUE(d.manifest.empty()) << d.manifest.dump(2);
  for (const auto& t : d.tensors) {
    EXPECT_EQ(t.status, "identical") << t.file << "/" << t.name;
    ASSERT_TRUE(t.comparison.has_value());
    EXPECT_TRUE(t.comparison->bitwise_equal);
    EXPECT_EQ(t.comparison->differing, 0);
  }
  const Json j = d.to_json();
  EXPECT_EQ(j["identical"], true);
  EXPECT_EQ(j["files"]["model"]["identical"], 11);  // 8 parameters, 3 BatchNorm buffers
  EXPECT_NE(render_diff(d).find("identical: every tensor is bit-identical"), std::string::npos);
}

TEST_F(CheckpointToolsTest, DiffReportsTensorConfigManifestAndShapeDifferences) {
  const std::string other = train_and_save(cnn_config({"train.lr=0.02", "train.max_steps=6"}), dir_->file("lr"));
  const CheckpointDiff d = diff_checkpoints(*base_, other);
  EXPECT_FALSE(d.identical());
  EXPECT_EQ(d.exit_code(), 1);
  EXPECT_TRUE(d.config["train.lr"]["affects_state"].get<bool>());
  EXPECT_EQ(d.config["train.lr"]["a"], 0.01);
  EXPECT_EQ(d.config["train.lr"]["b"], 0.02);
  EXPECT_EQ(d.manifest["step"]["a"], 4);
  EXPECT_EQ(d.manifest["step"]["b"], 6);
  EXPECT_TRUE(d.manifest.contains("trainer.batcher.position"));
  const TensorDifference* w = find_row(d, "model", "fc1.weight");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->status, "different");
  ASSERT_TRUE(w->comparison.has_value());
  EXPECT_GT(w->comparison->max_abs, 0.0);
  EXPECT_GT(w->comparison->differing, 0);
  EXPECT_GE(w->comparison->max_abs, w->comparison->mean_abs);
  EXPECT_LT(w->comparison->cosine, 1.0);
  EXPECT_GT(w->comparison->cosine, 0.5);  // a few more steps move weights, they do not replace them
  const TensorDifference* counter = find_row(d, "model", "bn1.num_batches_tracked");
  ASSERT_NE(counter, nullptr);
  EXPECT_EQ(counter->status, "different");
  EXPECT_EQ(counter->comparison->max_abs, 2.0);  // 6 - 4 batches, compared as values

  // A wider hidden layer: reshaped tensors are reported, not compared.
  const std::string wide = train_and_save(
      cnn_config({"model.layers=[{type=\"conv2d\", out=4, kernel=3, padding=1}, {type=\"batchnorm\"}, "
                  "{type=\"relu\"}, {type=\"maxpool2d\", kernel=2}, {type=\"flatten\"}, {type=\"linear\", out=24}, "
                  "{type=\"relu\"}, {type=\"linear\", name=\"head\"}]"}),
      dir_->file("wide"));
  const CheckpointDiff s = diff_checkpoints(*base_, wide);
  EXPECT_EQ(find_row(s, "model", "fc1.weight")->status, "shape");
  EXPECT_FALSE(find_row(s, "model", "fc1.weight")->comparison.has_value());
  EXPECT_EQ(find_row(s, "model", "fc2.weight")->status, "only_a");
  EXPECT_EQ(find_row(s, "model", "head.weight")->status, "only_b");
  EXPECT_EQ(find_row(s, "optimizer", "head.bias/exp_avg")->status, "only_b");
  EXPECT_TRUE(s.config.contains("model.layers"));
  const std::string text = render_diff(s);
  for (const char* part : {"fc1.weight", "shape", "[16, 784] vs [24, 784]", "only_a", "head.weight", "model.layers"})
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  const Json j = s.to_json();
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_EQ(j["files"]["model"]["only_b"], 2);
}

// ---- import / export: names and formats --------------------------------------------------------------------------

TEST(CheckpointToolsNames, KeyMismatchMessageSuggestsTheRenamesThatFitByShape) {
  KeyReport keys;
  keys.missing = {"conv1.weight", "conv1.bias", "fc1.weight"};
  keys.unexpected = {"features.0.weight", "features.0.bias", "classifier.weight"};
  const NamedTensors model = {{"conv1.weight", torch::zeros({4, 1, 3, 3})},
                              {"conv1.bias", torch::zeros({4})},
                              {"fc1.weight", torch::zeros({10, 784})}};
  const NamedTensors file = {{"features.0.weight", torch::zeros({4, 1, 3, 3})},
                             {"features.0.bias", torch::zeros({4})},
                             {"classifier.weight", torch::zeros({10, 100})}};
  const std::string msg = key_mismatch_message(keys, model, file);
  for (const char* part : {"missing (in the model, not in the file): conv1.weight [4, 1, 3, 3]",
                           "unexpected (in the file, not in the model): features.0.weight [4, 1, 3, 3]",
                           "'features.0.weight': 'conv1.weight'", "'features.0.bias': 'conv1.bias'",
                           "docs/model.md"})
    EXPECT_NE(msg.find(part), std::string::npos) << part << "\n" << msg;
  // classifier.weight does not fit fc1.weight's shape: no rename is suggested for it.
  EXPECT_EQ(msg.find("'classifier.weight':"), std::string::npos) << msg;
}

TEST(CheckpointToolsNames, ReadWeightsFileTellsFormatsApartByContent) {
  TempDir dir;
  const NamedTensors tensors = {{"a", torch::arange(6, torch::kFloat32).reshape({2, 3})}};
  const std::string st = dir.file("weights.bin");  // no telling extension on purpose
  write_safetensors(st, tensors, {{"format", "pt"}});
  const WeightsFile w = read_weights_file(st);
  EXPECT_EQ(w.format, "safetensors");
  ASSERT_EQ(w.tensors.size(), 1u);
  EXPECT_TRUE(bitwise_equal(w.tensors[0].second, tensors[0].second));
  EXPECT_EQ(w.metadata.at("format"), "pt");

  // A pre-1.6 torch.save file starts with a pickle protocol-2 header.
  const std::string legacy = dir.write("legacy.pt", std::string("\x80\x02\x8a\x0a", 4) + std::string(60, '\0'));
  expect_checkpoint_error([&] { read_weights_file(legacy); }, "legacy (pre-1.6, non-zip) torch.save");
  expect_checkpoint_error([&] { read_weights_file(dir.write("junk.pt", "not a weights file at all")); },
                          "junk.pt");
  EXPECT_THROW(read_weights_file(dir.file("missing.pt")), IoError);
}

TEST_F(CheckpointToolsTest, ExportThenImportRoundTripsTheModelBitwise) {
  const std::string file = dir_->file("export/model.safetensors");
  const ExportReport e = export_safetensors(*base_, file);
  EXPECT_EQ(e.tensors, 11);
  EXPECT_EQ(e.metadata.at("format"), "pt");
  EXPECT_EQ(e.metadata.at("traindx.step"), "4");
  const Checkpoint base = load_checkpoint(*base_);
  EXPECT_EQ(e.metadata.at("traindx.config_hash"), hash_bytes(base.manifest["config_toml"].get<std::string>()));
  EXPECT_EQ(e.metadata.at("traindx.manifest_hash"), base.manifest["manifest_hash"]);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(file)), e.bytes);

  const LoadedTensors read = read_safetensors(file);
  EXPECT_EQ(read.metadata, e.metadata);

  const ImportReport r = import_state_dict(file, cnn_config(), dir_->file("reimported"));
  EXPECT_EQ(r.format, "safetensors");
  EXPECT_EQ(r.tensors, 11);
  EXPECT_TRUE(r.keys.clean());
  const Checkpoint back = load_checkpoint(dir_->file("reimported"));
  EXPECT_EQ(back.step(), 0);
  EXPECT_EQ(back.manifest["extra"]["import"]["format"], "safetensors");
  EXPECT_EQ(back.manifest["extra"]["import"]["file_hash"], hash_bytes(read_file(file)));
  const CheckpointDiff d = diff_checkpoints(*base_, r.checkpoint);
  for (const auto& t : d.tensors) {
    if (t.file == "model") {
      EXPECT_EQ(t.status, "identical") << t.name;
    }
  }
  // Same weights, same probe inputs: the imported checkpoint's golden outputs are the original's, bit for bit.
  EXPECT_EQ(find_row(d, "probe", "outputs")->status, "identical");

  // An import never writes into a directory that already holds something.
  EXPECT_THROW(import_state_dict(file, cnn_config(), dir_->file("reimported")), IoError);
  // Weights of another architecture: the error lists the mismatch (fc1 exists in both, with other shapes).
  expect_checkpoint_error(
      [&] {
        import_state_dict(file, cnn_config({"model.layers=[{type=\"flatten\"}, {type=\"linear\"}]"}),
                          dir_->file("wrong"));
      },
      "reshaped: fc1.weight: checkpoint [16, 784] vs model [10, 784]");
}

TEST_F(CheckpointToolsTest, ImportSuggestsRenamesInModuleOrderForSequentialNames) {
  // The base model's tensors under nn.Sequential-style names, where text order ("net.10" < "net.8") differs from
  // module order; conv1.bias and bn1.bias have the same attribute and shape, so only the order tells them apart.
  const std::map<std::string, std::string> prefix = {{"conv1", "net.8"}, {"bn1", "net.10"}, {"fc1", "net.13"},
                                                     {"fc2", "net.15"}};
  NamedTensors renamed;
  for (const auto& [name, t] : load_checkpoint(*base_).model) {
    const auto dot = name.find('.');
    renamed.emplace_back(prefix.at(name.substr(0, dot)) + name.substr(dot), t);
  }
  const std::string file = dir_->file("sequential.safetensors");
  write_safetensors(file, renamed);
  expect_checkpoint_error([&] { import_state_dict(file, cnn_config(), dir_->file("sequential-import")); },
                          "'net.8.bias': 'conv1.bias'");
  expect_checkpoint_error([&] { import_state_dict(file, cnn_config(), dir_->file("sequential-import")); },
                          "'net.10.bias': 'bn1.bias'");
  expect_checkpoint_error([&] { import_state_dict(file, cnn_config(), dir_->file("sequential-import")); },
                          "'net.10.running_var': 'bn1.running_var'");
}

// ---- interop with Python's torch ---------------------------------------------------------------------------------

// The Python half. `save OUT`: a module whose attributes are named like traindx's layers, with BatchNorm running
// statistics moved away from their defaults, saved with torch.save(model.state_dict()); plus fixed inputs and the
// eval-mode outputs, and the same weights under nn.Sequential names. `check EXPORT PROBE STATE_DICT`: parses both
// safetensors files by hand (json + struct + numpy), compares the export with the original state_dict, runs the
// traindx probe inputs through the Python model loaded from the export, and prints the findings as JSON.
const char* const kInteropPy = R"PY(
import json, struct, sys
import numpy as np
import torch

torch.set_num_threads(1)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.fc1 = torch.nn.Linear(4 * 14 * 14, 16)
        self.fc2 = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))

NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
         "U8": "u1", "BOOL": "?"}

def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        array = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=NUMPY[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(array.copy())
    return out, meta

def bitwise(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.reshape(-1).view(torch.uint8).equal(
        b.reshape(-1).view(torch.uint8))

if sys.argv[1] == "save":
    out = sys.argv[2]
    torch.manual_seed(11)
    net = Net()
    net.train()
    for _ in range(3):
        net(torch.randn(8, 1, 28, 28) * 2 + 0.5)
    net.eval()
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        y = net(x)
    torch.save(net.state_dict(), out + "/model.pt")
    torch.save({"inputs": x, "outputs": y}, out + "/io.pt")
    seq = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(784, 16),
                              torch.nn.ReLU(), torch.nn.Linear(16, 10))
    torch.save(seq.state_dict(), out + "/sequential.pt")
else:
    export, probe, original = sys.argv[2], sys.argv[3], sys.argv[4]
    tensors, meta = read_safetensors(export)
    probe_tensors, _ = read_safetensors(probe)
    state = torch.load(original)
    report = {"metadata": meta, "names_equal": sorted(tensors) == sorted(state),
              "bitwise": {k: bitwise(tensors[k], state[k]) for k in state if k in tensors}}
    net = Net()
    net.load_state_dict(tensors, strict=True)
    net.eval()
    with torch.no_grad():
        y = net(probe_tensors["inputs"])
    golden = probe_tensors["outputs"]
    report["probe_max_abs"] = float((y - golden).abs().max())
    report["probe_bitwise"] = bitwise(y, golden)
    print(json.dumps(report))
)PY";

bool python_torch_available() {
  const std::string cmd = std::string(kPython) + " -c 'import torch, numpy' >/dev/null 2>&1";
  return fs::exists(kPython) && std::system(cmd.c_str()) == 0;
}

/// Runs the interop script with `args`; returns its stdout. Fails the test on a non-zero exit.
std::string run_python(const TempDir& dir, const std::string& args) {
  const std::string script = dir.write("interop.py", kInteropPy);
  const std::string out = dir.file("python.out");
  const std::string cmd = fmt::format("{} {} {} > {} 2> {}", kPython, script, args, out, dir.file("python.err"));
  const int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd << "\n" << read_file(dir.file("python.err"));
  return read_file(out);
}

TEST(CheckpointToolsInterop, PyTorchStateDictImportsAndPredictsTheSame) {
  if (!python_torch_available()) GTEST_SKIP() << kPython << " cannot import torch and numpy (python3-torch)";
  TempDir dir;
  run_python(dir, "save " + dir.path());
  const Config config = cnn_config();
  const ImportReport r = import_state_dict(dir.file("model.pt"), config, dir.file("imported"));
  EXPECT_EQ(r.format, "torch.save");
  EXPECT_EQ(r.tensors, 11);  // conv1 (2), bn1 (5 with running stats and counter), fc1 (2), fc2 (2)
  EXPECT_TRUE(r.keys.clean()) << r.keys.to_json().dump();

  // The checkpoint holds the Python tensors bit for bit, BatchNorm statistics and counter included.
  const Checkpoint c = load_checkpoint(r.checkpoint);
  const NamedTensors original = read_torch_state_dict(dir.file("model.pt"));
  std::map<std::string, torch::Tensor> saved(c.model.begin(), c.model.end());
  for (const auto& [name, t] : original) {
    ASSERT_TRUE(saved.count(name)) << name;
    EXPECT_TRUE(bitwise_equal(saved[name], t)) << name;
  }
  EXPECT_EQ(saved["bn1.num_batches_tracked"].item<int64_t>(), 3);

  // traindx's model, rebuilt from the config and the imported checkpoint, predicts what Python predicted.
  const auto model = build_model(ModelOptions::from_config(config), {1, 28, 28}, 10);
  load_model_tensors(*model, c.model, /*strict=*/true);
  model->train(false);
  const NamedTensors io = read_torch_state_dict(dir.file("io.pt"));
  ASSERT_EQ(io.size(), 2u);
  torch::Tensor outputs;
  {
    torch::NoGradGuard no_grad;
    outputs = model->forward(io[0].second);
  }
  const torch::Tensor expected = io[1].second;
  const double max_abs = (outputs - expected).abs().max().item<double>();
  EXPECT_LE(max_abs, 1e-5) << "traindx and PyTorch disagree on the same weights and inputs";
  RecordProperty("python_vs_traindx_max_abs", fmt::format("{}", max_abs));
  RecordProperty("python_vs_traindx_bitwise", bitwise_equal(outputs, expected) ? "true" : "false");

  // nn.Sequential names do not fit; the error pairs them with traindx's names by shape.
  expect_checkpoint_error([&] { import_state_dict(dir.file("sequential.pt"), config, dir.file("seq")); },
                          "'0.weight': 'conv1.weight'");
  EXPECT_FALSE(fs::exists(dir.file("seq/latest")));
}

TEST(CheckpointToolsInterop, ExportReadsBackInPythonAsTheSameTensorsAndPredictions) {
  if (!python_torch_available()) GTEST_SKIP() << kPython << " cannot import torch and numpy (python3-torch)";
  TempDir dir;
  run_python(dir, "save " + dir.path());
  const ImportReport r = import_state_dict(dir.file("model.pt"), cnn_config(), dir.file("imported"));
  const ExportReport e = export_safetensors(r.checkpoint, dir.file("export.safetensors"));
  const Json report = Json::parse(run_python(
      dir, fmt::format("check {} {}/probe.safetensors {}", e.path, r.checkpoint, dir.file("model.pt"))));
  EXPECT_TRUE(report["names_equal"].get<bool>()) << report.dump(2);
  ASSERT_EQ(report["bitwise"].size(), 11u);
  for (auto it = report["bitwise"].begin(); it != report["bitwise"].end(); ++it)
    EXPECT_TRUE(it.value().get<bool>()) << it.key();
  EXPECT_EQ(report["metadata"]["format"], "pt");
  EXPECT_EQ(report["metadata"]["traindx.step"], "0");
  // Python's model on traindx's probe inputs gives traindx's golden outputs.
  EXPECT_LE(report["probe_max_abs"].get<double>(), 1e-5) << report.dump(2);
  RecordProperty("probe_bitwise", report["probe_bitwise"].get<bool>() ? "true" : "false");
}

}  // namespace
}  // namespace traindx
