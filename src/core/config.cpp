#include "traindx/core/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include "traindx/core/error.h"
#include "traindx/core/text.h"

namespace traindx {
namespace {

const char* type_name(ValueType t) {
  switch (t) {
    case ValueType::Bool: return "a boolean (true/false)";
    case ValueType::Int: return "an integer";
    case ValueType::Float: return "a number";
    case ValueType::String: return "a string";
    case ValueType::StringArray: return "an array of strings";
    case ValueType::TableArray: return "an array of tables";
  }
  return "?";
}

Json toml_to_json(const toml::node& node) {
  if (auto t = node.as_table()) {
    Json out = Json::object();
    for (auto&& [k, v] : *t) out[std::string(k.str())] = toml_to_json(v);
    return out;
  }
  if (auto a = node.as_array()) {
    Json out = Json::array();
    for (auto&& v : *a) out.push_back(toml_to_json(v));
    return out;
  }
  if (auto v = node.as_string()) return Json(v->get());
  if (auto v = node.as_integer()) return Json(v->get());
  if (auto v = node.as_floating_point()) return Json(v->get());
  if (auto v = node.as_boolean()) return Json(v->get());
  // Dates and times have no meaning in our schema; validation then names the key and the expected type.
  return Json("<date/time>");
}

std::string describe(const Json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Checks `value` against the declared key, converting an integer given for a float. Throws ConfigError.
Json validate(const ConfigKey& key, Json value, const std::string& where) {
  auto fail = [&](const std::string& why) {
    TRAINDX_FAIL(ConfigError, "{}: key '{}' {}", where, key.path, why);
  };
  switch (key.type) {
    case ValueType::Bool:
      if (!value.is_boolean()) fail(fmt::format("must be {}, got {}", type_name(key.type), describe(value)));
      break;
    case ValueType::Int:
      if (value.is_number_float() && std::floor(value.get<double>()) == value.get<double>())
        value = static_cast<int64_t>(value.get<double>());
      if (!value.is_number_integer()) fail(fmt::format("must be {}, got {}", type_name(key.type), describe(value)));
      break;
    case ValueType::Float:
      if (value.is_number_integer()) value = static_cast<double>(value.get<int64_t>());
      if (!value.is_number_float()) fail(fmt::format("must be {}, got {}", type_name(key.type), describe(value)));
      if (!std::isfinite(value.get<double>())) fail("must be finite");
      break;
    case ValueType::String:
      if (!value.is_string()) fail(fmt::format("must be {}, got {}", type_name(key.type), describe(value)));
      if (!key.choices.empty()) {
        const auto s = value.get<std::string>();
        if (std::find(key.choices.begin(), key.choices.end(), s) == key.choices.end()) {
          fail(fmt::format("has value \"{}\", which is not one of: {} (closest: \"{}\")", s,
                           fmt::join(key.choices, ", "), closest_match(s, key.choices)));
        }
      }
      break;
    case ValueType::StringArray:
      if (!value.is_array()) fail(fmt::format("must be {}, got {}", type_name(key.type), describe(value)));
      for (const auto& e : value)
        if (!e.is_string()) fail(fmt::format("must hold only strings, got {}", describe(e)));
      break;
    case ValueType::TableArray:
      if (!value.is_array()) fail(fmt::format("must be {}, got {}", type_name(key.type), describe(value)));
      for (const auto& e : value)
        if (!e.is_object()) fail(fmt::format("must hold only tables ({{ type = ... }}), got {}", describe(e)));
      break;
  }
  if (value.is_number() && (key.min || key.max)) {
    const double x = value.get<double>();
    if (key.min && x < *key.min) fail(fmt::format("is {}, below the minimum {}", describe(value), *key.min));
    if (key.max && x > *key.max) fail(fmt::format("is {}, above the maximum {}", describe(value), *key.max));
  }
  return value;
}

Json parse_default(const ConfigKey& key) {
  auto tbl = toml::parse("v = " + key.default_toml);
  return toml_to_json(*tbl.get("v"));
}

const ConfigKey& require_key(const std::string& path, const std::string& where) {
  const ConfigKey* key = find_config_key(path);
  if (!key) {
    TRAINDX_FAIL(ConfigError, "{}: unknown key '{}'; did you mean '{}'? (all keys: docs/config.md)", where, path,
                 closest_config_key(path));
  }
  return *key;
}

}  // namespace

const ConfigKey* find_config_key(std::string_view path) {
  for (const auto& k : config_schema())
    if (k.path == path) return &k;
  return nullptr;
}

std::string closest_config_key(std::string_view path) {
  // Names other frameworks use for our keys: edit distance alone would not find them.
  static const std::map<std::string, std::string> aliases = {
      {"learning_rate", "train.lr"},        {"lr_rate", "train.lr"},          {"num_epochs", "train.epochs"},
      {"n_epochs", "train.epochs"},         {"epoch", "train.epochs"},        {"batchsize", "train.batch_size"},
      {"bs", "train.batch_size"},           {"optim", "train.optimizer"},     {"wd", "train.weight_decay"},
      {"scheduler", "train.schedule"},      {"lr_schedule", "train.schedule"}, {"num_threads", "run.threads"},
      {"layer", "model.layers"},            {"architecture", "model.layers"}, {"label", "data.target"},
      {"target_column", "data.target"},     {"steps", "train.max_steps"},     {"checkpoint_every", "checkpoint.every_steps"}};
  {
    const auto dot = path.rfind('.');
    const std::string leaf(dot == std::string_view::npos ? path : path.substr(dot + 1));
    auto it = aliases.find(to_lower(leaf));
    if (it != aliases.end()) return it->second;
  }
  std::vector<std::string> paths;
  for (const auto& k : config_schema()) paths.push_back(k.path);
  // A key given under the wrong section ("train.seed") is best matched on its last component.
  const auto dot = path.rfind('.');
  if (dot != std::string_view::npos) {
    const std::string leaf(path.substr(dot + 1));
    for (const auto& p : paths)
      if (p.size() > leaf.size() && p.compare(p.size() - leaf.size(), leaf.size(), leaf) == 0 &&
          p[p.size() - leaf.size() - 1] == '.')
        return p;
  }
  return closest_match(std::string(path), paths);
}

Config::Config() {
  for (const auto& key : config_schema()) {
    values_[key.path] = parse_default(key);
    origin_[key.path] = "default";
  }
}

Config Config::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TRAINDX_CHECK(in.good(), IoError, "cannot read config file '{}': check the path", path);
  std::stringstream buf;
  buf << in.rdbuf();
  return from_string(buf.str(), path);
}

Config Config::from_string(std::string_view text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    TRAINDX_FAIL(ConfigError, "{}:{}:{}: TOML syntax error: {}", source_name, e.source().begin.line,
                 e.source().begin.column, e.description());
  }
  Config config;
  for (auto&& [section_key, section_node] : root) {
    const std::string section(section_key.str());
    const auto line = section_node.source().begin.line;
    const std::string where = fmt::format("{}:{}", source_name, line);
    auto* section_table = section_node.as_table();
    if (!section_table) {
      require_key(section, where);  // a top-level key is never declared; this throws with a suggestion
      continue;
    }
    for (auto&& [k, v] : *section_table) {
      const std::string path = section + "." + std::string(k.str());
      const std::string key_where = fmt::format("{}:{}", source_name, v.source().begin.line);
      config.set_value(path, toml_to_json(v), key_where);
    }
  }
  return config;
}

void Config::set(const std::string& assignment) {
  const auto eq = assignment.find('=');
  TRAINDX_CHECK(eq != std::string::npos && eq > 0, ConfigError,
                "--set '{}': expected key.path=value, e.g. --set train.lr=0.1", assignment);
  const std::string path = trim(assignment.substr(0, eq));
  const std::string text = trim(assignment.substr(eq + 1));
  const std::string where = fmt::format("--set {}", assignment);
  const ConfigKey& key = require_key(path, where);
  Json value;
  try {
    auto tbl = toml::parse("v = " + text);
    value = toml_to_json(*tbl.get("v"));
  } catch (const toml::parse_error&) {
    TRAINDX_CHECK(key.type == ValueType::String, ConfigError,
                  "{}: '{}' is not a TOML value; key '{}' takes {}", where, text, path, type_name(key.type));
    value = text;  // an unquoted string is the string itself
  }
  set_value(path, value, "--set");
}

void Config::set_value(const std::string& path, const Json& value, const std::string& origin) {
  const ConfigKey& key = require_key(path, origin);
  values_[path] = validate(key, value, origin);
  origin_[path] = origin;
}

const Json& Config::get(const std::string& path) const {
  auto it = values_.find(path);
  TRAINDX_ASSERT(it != values_.end(), "config key '{}' is not declared in config_schema()", path);
  return it->second;
}

bool Config::get_bool(const std::string& path) const { return get(path).get<bool>(); }
int64_t Config::get_int(const std::string& path) const { return get(path).get<int64_t>(); }
double Config::get_double(const std::string& path) const { return get(path).get<double>(); }
std::string Config::get_string(const std::string& path) const { return get(path).get<std::string>(); }
std::vector<std::string> Config::get_string_array(const std::string& path) const {
  return get(path).get<std::vector<std::string>>();
}

bool Config::is_set(const std::string& path) const {
  auto it = origin_.find(path);
  return it != origin_.end() && it->second != "default";
}

std::string Config::origin(const std::string& path) const {
  auto it = origin_.find(path);
  return it == origin_.end() ? "default" : it->second;
}

Json Config::to_json() const {
  Json out = Json::object();
  for (const auto& key : config_schema()) {
    const auto dot = key.path.find('.');
    out[key.path.substr(0, dot)][key.path.substr(dot + 1)] = values_.at(key.path);
  }
  return out;
}

namespace {
// JSON string literals are valid TOML basic strings, so only keys and containers need care.
std::string toml_key(const std::string& k) {
  const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-';
  });
  return bare ? k : Json(k).dump();
}

std::string json_to_toml(const Json& v) {
  if (v.is_object()) {
    std::string out = "{ ";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += (first ? "" : ", ") + toml_key(it.key()) + " = " + json_to_toml(it.value());
      first = false;
    }
    return out + (first ? "}" : " }");
  }
  if (v.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + json_to_toml(v[i]);
    return out + "]";
  }
  if (v.is_number_float()) {
    std::string s = v.dump();
    if (s.find_first_of(".eE") == std::string::npos) s += ".0";
    return s;
  }
  return v.dump();
}
}  // namespace

std::string Config::to_toml() const {
  std::ostringstream out;
  out << "# Effective configuration written by traindx; reload it with `traindx train <this file>`.\n";
  std::string section;
  for (const auto& key : config_schema()) {
    const auto dot = key.path.find('.');
    const std::string s = key.path.substr(0, dot);
    if (s != section) {
      out << (section.empty() ? "" : "\n") << "[" << s << "]\n";
      section = s;
    }
    const Json& v = values_.at(key.path);
    out << key.path.substr(dot + 1) << " = ";
    if (key.type == ValueType::TableArray) {
      out << "[";
      for (size_t i = 0; i < v.size(); ++i) out << "\n  " << json_to_toml(v[i]) << (i + 1 < v.size() ? "," : "\n");
      out << "]\n";
    } else {
      out << json_to_toml(v) << "\n";
    }
  }
  return out.str();
}

std::string config_reference_markdown() {
  std::ostringstream out;
  out << "# Configuration reference\n\n"
      << "Generated from `src/core/config_schema.cpp` by `traindx config docs`; do not edit by hand.\n"
      << "Every key can be given in the TOML file or on the command line as `--set section.key=value` (TOML value "
         "syntax; unquoted text is accepted for string keys).\n";
  std::string section;
  for (const auto& key : config_schema()) {
    const auto dot = key.path.find('.');
    const std::string s = key.path.substr(0, dot);
    if (s != section) {
      out << "\n## [" << s << "]\n\n| key | type | default | meaning |\n|---|---|---|---|\n";
      section = s;
    }
    std::string meaning = key.help;
    if (!key.choices.empty()) meaning += " One of: `" + fmt::format("{}", fmt::join(key.choices, "`, `")) + "`.";
    if (key.min || key.max) {
      meaning += " Range: ";
      meaning += key.min ? fmt::format("{}", *key.min) : std::string("-inf");
      meaning += "..";
      meaning += key.max ? fmt::format("{}", *key.max) : std::string("inf");
      meaning += ".";
    }
    std::string type = type_name(key.type);
    out << "| `" << key.path << "` | " << type << " | `" << key.default_toml << "` | " << meaning << " |\n";
  }
  return out.str();
}

}  // namespace traindx
