// Checkpoint manifests: parsing and the schema check every reader relies on. Torch-free: compiled into the fuzz
// targets too.
#include <string>
#include <vector>

#include "traindx/checkpoint/manifest.h"
#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

namespace traindx {
namespace {

using Json = nlohmann::json;
constexpr int kMaxDepth = 64;

enum class Kind { Object, Array, String, Integer, Number, Boolean };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Object: return "an object";
    case Kind::Array: return "an array";
    case Kind::String: return "a string";
    case Kind::Integer: return "an integer";
    case Kind::Number: return "a number";
    case Kind::Boolean: return "true or false";
  }
  return "?";
}

bool is(const Json& v, Kind k) {
  switch (k) {
    case Kind::Object: return v.is_object();
    case Kind::Array: return v.is_array();
    case Kind::String: return v.is_string();
    case Kind::Integer: return v.is_number_integer();
    case Kind::Number: return v.is_number();
    case Kind::Boolean: return v.is_boolean();
  }
  return false;
}

// Checks the fields of one JSON object, naming each by its path in errors.
class Fields {
 public:
  Fields(const Json& object, std::string path, const std::string& source)
      : object_(object), path_(std::move(path)), source_(source) {}

  // `key` must be present with kind `k`.
  const Json& need(const char* key, Kind k) const {
    TRAINDX_CHECK(object_.contains(key), CheckpointError, "{}: {} is missing", source_, name(key));
    return check(key, k);
  }
  // `key` may be absent; when present it has kind `k`.
  void allow(const char* key, Kind k) const {
    if (object_.contains(key)) check(key, k);
  }
  // An array whose every element has kind `k`.
  const Json& need_array_of(const char* key, Kind k) const {
    const Json& a = need(key, Kind::Array);
    for (size_t i = 0; i < a.size(); ++i)
      TRAINDX_CHECK(is(a[i], k), CheckpointError, "{}: {}[{}] is {}, not {}", source_, name(key), i, a[i].type_name(),
                    kind_name(k));
    return a;
  }
  Fields at(const char* key) const { return Fields(need(key, Kind::Object), name(key), source_); }
  std::string name(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  const Json& check(const char* key, Kind k) const {
    const Json& v = object_.at(key);
    TRAINDX_CHECK(is(v, k), CheckpointError, "{}: {} is {}, not {}", source_, name(key), v.type_name(), kind_name(k));
    return v;
  }
  const Json& object_;
  std::string path_;
  const std::string& source_;
};

bool is_hex32(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void check_raw_table(const Fields& table, const std::string& source) {
  const int64_t rows = table.need("rows", Kind::Integer).get<int64_t>();
  TRAINDX_CHECK(rows >= 0, CheckpointError, "{}: {} is {}, not a row count", source, table.name("rows"), rows);
  const Json& columns = table.need_array_of("columns", Kind::Object);
  for (size_t i = 0; i < columns.size(); ++i) {
    const Fields column(columns[i], table.name("columns") + fmt::format("[{}]", i), source);
    column.need("name", Kind::String);
    const bool categorical = column.need("categorical", Kind::Boolean).get<bool>();
    const Json& values = categorical ? column.need_array_of("text", Kind::String) : column.need("numbers", Kind::Array);
    if (!categorical)
      for (size_t r = 0; r < values.size(); ++r)
        TRAINDX_CHECK(values[r].is_number() || values[r].is_null(), CheckpointError,
                      "{}: {}.numbers[{}] is {}, not a number or null", source, column.name(""), r,
                      values[r].type_name());
    TRAINDX_CHECK(static_cast<int64_t>(values.size()) == rows, CheckpointError,
                  "{}: {} holds {} values for {} rows", source, column.name(categorical ? "text" : "numbers"),
                  values.size(), rows);
  }
}

}  // namespace

std::string checkpoint_manifest_hash(Json manifest) {
  manifest.erase("manifest_hash");
  return hash_bytes(manifest.dump());
}

Json parse_checkpoint_manifest(std::string_view text, const std::string& source) {
  // Depth-limited: a file of nested brackets must not exhaust the stack of whoever destroys or walks the tree.
  auto limit_depth = [&](int depth, Json::parse_event_t event, Json&) {
    if (event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start)
      TRAINDX_CHECK(depth < kMaxDepth, CheckpointError, "{}: nests objects or arrays deeper than {} levels", source,
                    kMaxDepth);
    return true;
  };
  Json m = Json::parse(text, limit_depth, /*allow_exceptions=*/false);
  TRAINDX_CHECK(!m.is_discarded() && m.is_object(), CheckpointError, "{}: not a JSON object (truncated or corrupt)",
                source);
  const Fields top(m, "", source);
  TRAINDX_CHECK(m.value("format", Json()) == kCheckpointFormat, CheckpointError,
                "{}: not a traindx checkpoint manifest (format is not \"{}\")", source, kCheckpointFormat);
  const int64_t version = top.need("version", Kind::Integer).get<int64_t>();
  TRAINDX_CHECK(version >= 1, CheckpointError, "{}: version {} is not a checkpoint format version", source, version);
  TRAINDX_CHECK(version <= kCheckpointFormatVersion, CheckpointError,
                "{}: checkpoint format version {} is newer than this traindx reads ({}); upgrade traindx", source,
                version, kCheckpointFormatVersion);
  TRAINDX_CHECK(m.contains("manifest_hash") && m["manifest_hash"].is_string(), CheckpointError,
                "{}: manifest_hash missing", source);
  TRAINDX_CHECK(checkpoint_manifest_hash(m) == m["manifest_hash"].get<std::string>(), CheckpointError,
                "{}: manifest_hash does not match the manifest: the file is corrupt or was edited", source);

  const Fields tensors = top.at("tensors");
  for (const char* file : kCheckpointTensorFiles) {
    const Json& table = tensors.need(file, Kind::Object);
    for (auto it = table.begin(); it != table.end(); ++it)
      TRAINDX_CHECK(it.value().is_string() && is_hex32(it.value().get<std::string>()), CheckpointError,
                    "{}: tensors.{}.{} is {}, not a hash (32 hex digits)", source, file, it.key(), it.value().dump());
  }

  TRAINDX_CHECK(top.need("step", Kind::Integer).get<int64_t>() >= 0, CheckpointError, "{}: step is negative",
                source);
  top.allow("created_at", Kind::String);
  top.need("config_toml", Kind::String);
  top.need("environment", Kind::Object);
  top.need("pipeline", Kind::Object);
  top.need("metrics", Kind::Object);
  top.need("extra", Kind::Object);

  const Fields model = top.at("model");
  const Json& layers = model.need_array_of("layers", Kind::Object);
  for (size_t i = 0; i < layers.size(); ++i) {
    const Fields layer(layers[i], fmt::format("model.layers[{}]", i), source);
    layer.need("name", Kind::String);
    layer.need("type", Kind::String);
  }
  model.need("parameters", Kind::Integer);
  model.need("dtype", Kind::String);
  model.allow("training_mode_at_save", Kind::Boolean);

  const Fields optimizer = top.at("optimizer");
  optimizer.need("name", Kind::String);
  const Json& scalars = optimizer.need("scalars", Kind::Object);
  for (auto it = scalars.begin(); it != scalars.end(); ++it) {
    TRAINDX_CHECK(it.value().is_object(), CheckpointError, "{}: optimizer.scalars.{} is {}, not an object", source,
                  it.key(), it.value().type_name());
    Fields(it.value(), "optimizer.scalars." + it.key(), source).allow("step", Kind::Integer);
  }

  const Fields trainer = top.at("trainer");
  trainer.need("step", Kind::Integer);
  trainer.need("batcher", Kind::Object);
  trainer.need("early_stopping", Kind::Object);
  const Fields schedule = trainer.at("schedule");
  schedule.need("name", Kind::String);
  schedule.need("base_lr", Kind::Number);
  schedule.need("total_steps", Kind::Integer);

  const Fields data_info = top.at("data_info");
  data_info.need("source", Kind::String);
  data_info.need("task", Kind::String);
  data_info.need("num_classes", Kind::Integer);
  data_info.need_array_of("class_names", Kind::String);
  data_info.need_array_of("feature_names", Kind::String);
  const Json& shape = data_info.need_array_of("input_shape", Kind::Integer);
  for (size_t i = 0; i < shape.size(); ++i)
    TRAINDX_CHECK(shape[i].get<int64_t>() > 0, CheckpointError, "{}: data_info.input_shape[{}] is {}, not a size",
                  source, i, shape[i].get<int64_t>());

  const Fields probe = top.at("probe");
  probe.need("split", Kind::String);
  probe.need("examples", Kind::Integer);
  probe.need("mode", Kind::String);
  if (m["probe"].contains("raw_table")) check_raw_table(probe.at("raw_table"), source);
  return m;
}

}  // namespace traindx
