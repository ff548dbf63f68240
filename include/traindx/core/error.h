#pragma once
/// Errors in three tiers (see docs/architecture.md):
///  1. bad user input or environment  -> a typed traindx::Error thrown by TRAINDX_CHECK; the CLI maps it to exit 2;
///  2. expected outcomes              -> return values (std::optional, small result structs), never exceptions;
///  3. broken invariants (our bugs)   -> TRAINDX_ASSERT, which throws InternalError (never aborts: traindx runs
///                                       inside other people's training jobs).
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace traindx {

/// What kind of user-facing problem an Error reports; decides nothing but the wording of the CLI's one line.
enum class ErrorKind { Config, Data, Model, Io, Checkpoint, Usage, Internal };

/// Human-readable name of an ErrorKind ("config error", "data error", ...).
const char* error_kind_name(ErrorKind kind);

/// Base of every exception traindx throws on purpose. The message names the file, line, key or index at fault
/// and says what to do.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

/// Unknown key, wrong type, value out of range in a config or option struct.
struct ConfigError : Error {
  explicit ConfigError(const std::string& m) : Error(ErrorKind::Config, m) {}
};
/// Missing, truncated or malformed data (IDX, CSV), labels out of range, shapes the model cannot take.
struct DataError : Error {
  explicit DataError(const std::string& m) : Error(ErrorKind::Data, m) {}
};
/// A model description that cannot be built, or a TorchScript file that cannot be used.
struct ModelError : Error {
  explicit ModelError(const std::string& m) : Error(ErrorKind::Model, m) {}
};
/// File-system and database failures (cannot open, cannot write, disk full).
struct IoError : Error {
  explicit IoError(const std::string& m) : Error(ErrorKind::Io, m) {}
};
/// Corrupt, truncated, tampered or incompatible checkpoint.
struct CheckpointError : Error {
  explicit CheckpointError(const std::string& m) : Error(ErrorKind::Checkpoint, m) {}
};
/// Bad command-line usage.
struct UsageError : Error {
  explicit UsageError(const std::string& m) : Error(ErrorKind::Usage, m) {}
};
/// A broken invariant inside traindx: a bug to report, not a user mistake.
struct InternalError : Error {
  explicit InternalError(const std::string& m) : Error(ErrorKind::Internal, m) {}
};

}  // namespace traindx

/// Throws ErrorType(fmt::format(...)) when cond is false. Use for tier-1 checks on user input.
#define TRAINDX_CHECK(cond, ErrorType, ...)          \
  do {                                               \
    if (!(cond)) {                                   \
      throw ErrorType(::fmt::format(__VA_ARGS__));   \
    }                                                \
  } while (false)

/// Throws ErrorType(fmt::format(...)) unconditionally.
#define TRAINDX_FAIL(ErrorType, ...) throw ErrorType(::fmt::format(__VA_ARGS__))

/// Tier-3 invariant: throws InternalError naming the source location. Always on, also in Release.
#define TRAINDX_ASSERT(cond, ...)                                                                   \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      throw ::traindx::InternalError(::fmt::format("internal error at {}:{}: assertion `{}` failed: {}", \
                                                   __FILE__, __LINE__, #cond, ::fmt::format(__VA_ARGS__))); \
    }                                                                                               \
  } while (false)
