#include "traindx/core/error.h"

namespace traindx {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Config: return "config error";
    case ErrorKind::Data: return "data error";
    case ErrorKind::Model: return "model error";
    case ErrorKind::Io: return "I/O error";
    case ErrorKind::Checkpoint: return "checkpoint error";
    case ErrorKind::Usage: return "usage error";
    case ErrorKind::Internal: return "internal error";
  }
  return "error";
}

}  // namespace traindx
