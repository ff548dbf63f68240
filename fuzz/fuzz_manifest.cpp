// libFuzzer target: parse_checkpoint_manifest on arbitrary bytes must either throw CheckpointError or return a
// manifest on which the readers' typed accesses succeed; anything else (crash, sanitizer report, a JSON type error
// escaping) is a bug. An input that starts with '#' gets its manifest_hash recomputed first (when the rest is a
// JSON object), so that mutations get past the hash to the schema checks, as an attacker's edits would.
#include <cstddef>
#include <cstdint>
#include <string>

#include "traindx/checkpoint/manifest.h"
#include "traindx/core/error.h"

namespace {

using Json = nlohmann::json;
struct TooDeep {};

// The accesses load_checkpoint, restore_trainer, verify and inspect make once the manifest has passed.
void read_like_the_readers(const Json& m) {
  (void)m.at("step").get<int64_t>();
  (void)m.at("config_toml").get<std::string>();
  (void)m.at("model").at("dtype").get<std::string>();
  for (const auto& layer : m.at("model").at("layers")) (void)layer.at("name").get<std::string>();
  (void)m.at("optimizer").at("name").get<std::string>();
  for (const auto& [name, s] : m.at("optimizer").at("scalars").items()) (void)s.value("step", int64_t{0});
  const Json& trainer = m.at("trainer");
  (void)trainer.at("step").get<int64_t>();
  (void)trainer.at("schedule").value("total_steps", int64_t{0});
  (void)trainer.at("schedule").at("base_lr").get<double>();
  const Json& info = m.at("data_info");
  (void)info.at("input_shape").get<std::vector<int64_t>>();
  (void)info.at("class_names").get<std::vector<std::string>>();
  (void)info.value("num_classes", int64_t{1});
  (void)info.value("task", "classification");
  if (m.at("probe").contains("raw_table")) {
    const Json& table = m["probe"]["raw_table"];
    (void)table.at("rows").get<int64_t>();
    for (const auto& c : table.at("columns")) {
      (void)c.at("name").get<std::string>();
      if (c.at("categorical").get<bool>()) {
        (void)c.at("text").get<std::vector<std::string>>();
      } else {
        for (const auto& v : c.at("numbers")) (void)(v.is_null() ? 0.0 : v.get<double>());
      }
    }
  }
  for (const auto& [file, hashes] : m.at("tensors").items())
    for (const auto& [name, h] : hashes.items()) (void)h.get<std::string>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  if (!text.empty() && text[0] == '#') {
    Json m;
    try {
      m = Json::parse(
          text.begin() + 1, text.end(),
          [](int depth, Json::parse_event_t, Json&) {
            if (depth > 64) throw TooDeep{};
            return true;
          },
          /*allow_exceptions=*/false);
    } catch (const TooDeep&) {
      return 0;
    }
    if (m.is_discarded() || !m.is_object()) return 0;
    m["manifest_hash"] = traindx::checkpoint_manifest_hash(m);
    text = m.dump();
  }
  Json manifest;
  try {
    manifest = traindx::parse_checkpoint_manifest(text, "fuzz/manifest.json");
  } catch (const traindx::CheckpointError&) {
    return 0;
  }
  read_like_the_readers(manifest);
  return 0;
}
