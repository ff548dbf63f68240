#pragma once
/// Run configuration: a TOML document validated against one declared schema (config_schema()), from which the
/// CLI's help and docs/config.md are generated. Library users may skip TOML entirely and fill the option structs
/// of each module (DataOptions, TrainOptions, ...) directly; Config is only the TOML front door to those structs.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace traindx {

using Json = nlohmann::json;

/// The TOML type a key takes.
enum class ValueType { Bool, Int, Float, String, StringArray, TableArray };

/// One declared config key: the single source of validation, `traindx config keys` and docs/config.md.
struct ConfigKey {
  std::string path;          ///< dotted path, e.g. "train.lr"
  ValueType type;            ///< TOML type; an Int is accepted where a Float is declared
  std::string default_toml;  ///< default as a TOML literal, e.g. "0.01", "\"sgd\"", "[]"
  std::string help;          ///< one sentence for docs and --help
  std::vector<std::string> choices;  ///< allowed strings; empty means any string
  std::optional<double> min;         ///< inclusive numeric lower bound
  std::optional<double> max;         ///< inclusive numeric upper bound
};

/// Every key traindx understands, grouped by section, in documentation order.
const std::vector<ConfigKey>& config_schema();

/// The declared key with this path, or nullptr.
const ConfigKey* find_config_key(std::string_view path);

/// The declared key closest to `path` by edit distance (for "did you mean" messages).
std::string closest_config_key(std::string_view path);

/// docs/config.md, generated from config_schema().
std::string config_reference_markdown();

/// A validated configuration: defaults, overlaid by a TOML file, overlaid by `--set key=value` assignments.
/// Every mutation validates the touched key; errors throw ConfigError naming the key, where it came from
/// (file:line or --set) and the closest valid key or the allowed values.
class Config {
 public:
  /// All defaults.
  Config();

  /// Parses and validates a TOML file. Throws IoError if unreadable, ConfigError on syntax or schema errors.
  static Config from_file(const std::string& path);

  /// Parses and validates TOML text; `source_name` is used in messages.
  static Config from_string(std::string_view toml_text, const std::string& source_name = "<config>");

  /// Applies one `key.path=value` assignment; value uses TOML syntax ("0.1", "true", "\"adam\"", "[1,2]").
  /// For string keys an unquoted value is taken as the string itself.
  void set(const std::string& assignment);

  /// Sets a key to an already-typed value (validated as above).
  void set_value(const std::string& path, const Json& value, const std::string& origin = "api");

  bool get_bool(const std::string& path) const;
  int64_t get_int(const std::string& path) const;
  double get_double(const std::string& path) const;
  std::string get_string(const std::string& path) const;
  std::vector<std::string> get_string_array(const std::string& path) const;
  /// The raw JSON value of a key (e.g. model.layers, an array of tables).
  const Json& get(const std::string& path) const;

  /// True when the key was given by the file or --set rather than defaulted.
  bool is_set(const std::string& path) const;
  /// "file.toml:12", "--set", or "default" — for messages about a key.
  std::string origin(const std::string& path) const;

  /// All effective values as a JSON object keyed by section, then key.
  Json to_json() const;
  /// The effective configuration as TOML (written into every run directory; reloadable with from_string).
  std::string to_toml() const;

 private:
  std::map<std::string, Json> values_;         // dotted path -> value
  std::map<std::string, std::string> origin_;  // dotted path -> where it was set
};

}  // namespace traindx
