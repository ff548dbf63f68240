// Reads torch.save zip archives: a restricted pickle machine that builds data only (tensors, strings, numbers,
// tuples, lists, dicts) and whose only callables are the handful of constructors torch.save's pickles use.
// Opcode semantics follow CPython's Lib/pickle.py; torch.save (1.13) emits protocol 2, see docs/formats.md.
// Torch-free: compiled into the fuzz targets.
//
// Objects live in arenas owned by the machine and values refer to them by index: pickles share objects through
// the memo and may even build cycles, which index references survive without leaks or recursion.
#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "traindx/checkpoint/tensor_io.h"
#include "traindx/core/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "traindx copies little-endian file bytes straight into tensors; big-endian hosts are unsupported");

namespace traindx {
namespace {

enum class Kind : uint8_t { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor };

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "class or function";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

/// The only globals a pickle may name.
enum class Callable : uint8_t { OrderedDict, RebuildTensorV2, RebuildParameter, StorageType };

struct StorageType {
  const char* name;  // in module torch
  const char* dtype;
};
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", "F32"}, {"DoubleStorage", "F64"}, {"HalfStorage", "F16"}, {"BFloat16Storage", "BF16"},
    {"LongStorage", "I64"},  {"IntStorage", "I32"},    {"ShortStorage", "I16"}, {"CharStorage", "I8"},
    {"ByteStorage", "U8"},   {"BoolStorage", "BOOL"},
};

/// A pickle value. Scalars are held inline; everything else is an index into the machine's arenas.
struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;   // Bool, Int; the Callable of a Global
  double f = 0;    // Float
  size_t ref = 0;  // index into the arena of its kind; the storage type of a Global
};

struct DictObject {
  std::vector<std::pair<Value, Value>> items;
  std::unordered_map<std::string, size_t> string_keys;  // Python dict semantics: re-setting a key replaces it
};

struct StorageObject {
  std::string key;
  const char* dtype;
  uint64_t numel;
  std::string_view bytes;  // a view into the archive
};

struct TensorSpec {
  size_t storage;
  int64_t offset;
  std::vector<int64_t> size;
  std::vector<int64_t> stride;
};

/// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

/// Finds storages in the archive: "<archive>/data/<key>", each CRC-checked once.
class StorageFiles {
 public:
  StorageFiles(std::string_view zip, const std::vector<ZipMember>& members, std::string prefix, std::string source)
      : zip_(zip), prefix_(std::move(prefix)), source_(std::move(source)) {
    for (const auto& member : members) by_name_.emplace(member.name, &member);
  }

  /// The bytes of the member named prefix + name, or nullopt if there is none.
  std::optional<std::string_view> find(const std::string& name) const {
    const auto it = by_name_.find(prefix_ + name);
    if (it == by_name_.end()) return std::nullopt;
    return zip_member_data(zip_, *it->second, source_);
  }

 private:
  std::string_view zip_;
  std::string prefix_;
  std::string source_;
  std::unordered_map<std::string, const ZipMember*> by_name_;
};

class Unpickler {
 public:
  Unpickler(std::string_view pickle, const StorageFiles& files, const TorchLoadLimits& limits, std::string source)
      : pickle_(pickle), files_(files), limits_(limits), source_(std::move(source)) {}

  /// Runs the pickle to STOP and returns the top-level value.
  Value run();

  const DictObject& dict(const Value& v) const { return dicts_[v.ref]; }
  const std::string& string(const Value& v) const { return strings_[v.ref]; }
  const TensorSpec& tensor(const Value& v) const { return tensors_[v.ref]; }
  const StorageObject& storage(size_t index) const { return storages_[index]; }

 private:
  /// "<source>: data.pkl byte N", the prefix of every error about the pickle.
  std::string at() const { return fmt::format("{}: data.pkl byte {}", source_, op_pos_); }

  std::string_view read(size_t n) {
    TRAINDX_CHECK(n <= pickle_.size() - pos_, CheckpointError,
                  "{}: the pickle ends in the middle of an opcode (truncated data.pkl)", at());
    const std::string_view out = pickle_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  uint64_t read_le(size_t n) {
    const std::string_view b = read(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = (v << 8) | static_cast<unsigned char>(b[k]);
    return v;
  }
  std::string_view read_line() {
    const size_t end = pickle_.find('\n', pos_);
    TRAINDX_CHECK(end != std::string_view::npos, CheckpointError,
                  "{}: the pickle ends inside a GLOBAL name (truncated data.pkl)", at());
    const std::string_view line = pickle_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return line;
  }

  void push(Value v) {
    TRAINDX_CHECK(stack_.size() + marks_.size() < limits_.max_stack_depth, CheckpointError,
                  "{}: the pickle stack exceeds {} entries (TorchLoadLimits::max_stack_depth)", at(),
                  limits_.max_stack_depth);
    stack_.push_back(v);
  }
  Value pop() {
    TRAINDX_CHECK(stack_.size() > floor(), CheckpointError, "{}: pops from an empty pickle stack", at());
    const Value v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value& top() {
    TRAINDX_CHECK(stack_.size() > floor(), CheckpointError, "{}: needs a value but the pickle stack is empty",
                  at());
    return stack_.back();
  }
  /// Values above the innermost MARK may be popped; the ones below belong to an enclosing MARK.
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  /// Pops everything above the innermost MARK, and the mark.
  std::vector<Value> pop_mark() {
    TRAINDX_CHECK(!marks_.empty(), CheckpointError, "{}: needs a MARK but there is none", at());
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Value> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }

  void count_items(size_t n) {
    TRAINDX_CHECK(n <= limits_.max_container_items - std::min(items_, limits_.max_container_items), CheckpointError,
                  "{}: the pickle builds more than {} objects and container items "
                  "(TorchLoadLimits::max_container_items)",
                  at(),
                  limits_.max_container_items);
    items_ += n;
  }

  // Every object counts against max_container_items too, so memory stays proportional to the limit even for
  // pickles made of nothing but tiny objects.
  Value make_string(std::string_view s) {
    TRAINDX_CHECK(valid_utf8(s), CheckpointError, "{}: a string is not valid UTF-8", at());
    count_items(1);
    strings_.emplace_back(s);
    return Value{Kind::String, 0, 0, strings_.size() - 1};
  }
  Value make_sequence(Kind kind, std::vector<Value> items) {
    count_items(items.size() + 1);
    sequences_.push_back(std::move(items));
    return Value{kind, 0, 0, sequences_.size() - 1};
  }
  Value make_dict() {
    count_items(1);
    dicts_.emplace_back();
    return Value{Kind::Dict, 0, 0, dicts_.size() - 1};
  }
  Value make_int(int64_t v) { return Value{Kind::Int, v, 0, 0}; }

  const std::vector<Value>& tuple_of(const Value& v, const char* what) {
    TRAINDX_CHECK(v.kind == Kind::Tuple, CheckpointError, "{}: {} must be a tuple, not a {}", at(), what,
                  kind_name(v.kind));
    return sequences_[v.ref];
  }
  int64_t int_of(const Value& v, const char* what) {
    TRAINDX_CHECK(v.kind == Kind::Int, CheckpointError, "{}: {} must be an int, not a {}", at(), what,
                  kind_name(v.kind));
    return v.i;
  }

  void set_item(Value target, Value key, Value value) {
    TRAINDX_CHECK(target.kind == Kind::Dict, CheckpointError, "{}: SETITEM on a {}, not a dict", at(),
                  kind_name(target.kind));
    DictObject& d = dicts_[target.ref];
    if (key.kind == Kind::String) {
      const auto [it, inserted] = d.string_keys.emplace(strings_[key.ref], d.items.size());
      if (!inserted) {
        d.items[it->second].second = value;
        return;
      }
    }
    count_items(1);
    d.items.emplace_back(key, value);
  }

  void op_global(std::string_view module, std::string_view name);
  void op_reduce();
  void op_build();
  void op_persistent_id();
  Value rebuild_tensor(const std::vector<Value>& args);
  void op_memo_put(uint64_t index);
  void op_memo_get(uint64_t index);

  std::string_view pickle_;
  const StorageFiles& files_;
  const TorchLoadLimits& limits_;
  std::string source_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;
  size_t items_ = 0;

  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;

  std::vector<std::string> strings_;
  std::vector<std::vector<Value>> sequences_;  // tuples and lists
  std::vector<DictObject> dicts_;
  std::vector<StorageObject> storages_;
  std::unordered_map<std::string, size_t> storage_by_key_;
  std::vector<TensorSpec> tensors_;
};

Value Unpickler::run() {
  while (true) {
    op_pos_ = pos_;
    const auto op = static_cast<unsigned char>(read(1)[0]);
    switch (op) {
      case 0x80: {  // PROTO
        const auto version = static_cast<unsigned char>(read(1)[0]);
        TRAINDX_CHECK(version >= 2 && version <= 5, CheckpointError,
                      "{}: pickle protocol {} (torch.save writes protocol 2; traindx reads 2 to 5)", at(), version);
        break;
      }
      case 0x95:  // FRAME: a length hint only; the opcodes inside are read as usual
        read(8);
        break;
      case '.':  // STOP
        TRAINDX_CHECK(marks_.empty() && stack_.size() == 1, CheckpointError,
                      "{}: STOP with {} values and {} marks on the stack; expected one value", at(), stack_.size(),
                      marks_.size());
        return stack_.back();
      case '(':  // MARK
        TRAINDX_CHECK(stack_.size() + marks_.size() < limits_.max_stack_depth, CheckpointError,
                      "{}: the pickle stack exceeds {} entries (TorchLoadLimits::max_stack_depth)", at(),
                      limits_.max_stack_depth);
        marks_.push_back(stack_.size());
        break;
      case '}':  // EMPTY_DICT
        push(make_dict());
        break;
      case ']':  // EMPTY_LIST
        push(make_sequence(Kind::List, {}));
        break;
      case ')':  // EMPTY_TUPLE
        push(make_sequence(Kind::Tuple, {}));
        break;
      case 't':  // TUPLE
        push(make_sequence(Kind::Tuple, pop_mark()));
        break;
      case 0x85:  // TUPLE1
      case 0x86:  // TUPLE2
      case 0x87: {  // TUPLE3
        std::vector<Value> items(op - 0x84);
        for (size_t k = items.size(); k-- > 0;) items[k] = pop();
        push(make_sequence(Kind::Tuple, std::move(items)));
        break;
      }
      case 'X':  // BINUNICODE
        push(make_string(read(static_cast<size_t>(read_le(4)))));
        break;
      case 0x8c:  // SHORT_BINUNICODE
        push(make_string(read(static_cast<size_t>(read_le(1)))));
        break;
      case 0x8d: {  // BINUNICODE8
        const uint64_t n = read_le(8);
        TRAINDX_CHECK(n <= pickle_.size(), CheckpointError, "{}: string length {} exceeds the pickle", at(), n);
        push(make_string(read(static_cast<size_t>(n))));
        break;
      }
      case 'K':  // BININT1
        push(make_int(static_cast<int64_t>(read_le(1))));
        break;
      case 'M':  // BININT2
        push(make_int(static_cast<int64_t>(read_le(2))));
        break;
      case 'J':  // BININT: signed 32-bit
        push(make_int(static_cast<int32_t>(static_cast<uint32_t>(read_le(4)))));
        break;
      case 0x8a: {  // LONG1: n-byte little-endian two's complement
        const auto n = static_cast<size_t>(read_le(1));
        TRAINDX_CHECK(n <= 8, CheckpointError, "{}: an integer of {} bytes does not fit in 64 bits", at(), n);
        uint64_t v = read_le(n);
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
        int64_t s = 0;
        std::memcpy(&s, &v, sizeof s);
        push(make_int(s));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const std::string_view b = read(8);
        uint64_t bits = 0;
        for (char c : b) bits = (bits << 8) | static_cast<unsigned char>(c);
        double d = 0;
        std::memcpy(&d, &bits, sizeof d);
        push(Value{Kind::Float, 0, d, 0});
        break;
      }
      case 0x88:  // NEWTRUE
      case 0x89:  // NEWFALSE
        push(Value{Kind::Bool, op == 0x88 ? 1 : 0, 0, 0});
        break;
      case 'N':  // NONE
        push(Value{});
        break;
      case 'c': {  // GLOBAL "module\nname\n"
        const std::string_view module = read_line();
        const std::string_view name = read_line();
        op_global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        const Value name = pop();
        const Value module = pop();
        TRAINDX_CHECK(name.kind == Kind::String && module.kind == Kind::String, CheckpointError,
                      "{}: STACK_GLOBAL needs two strings", at());
        op_global(string(module), string(name));
        break;
      }
      case 'R':  // REDUCE
        op_reduce();
        break;
      case 'b':  // BUILD
        op_build();
        break;
      case 'Q':  // BINPERSID
        op_persistent_id();
        break;
      case 's': {  // SETITEM
        const Value value = pop();
        const Value key = pop();
        set_item(top(), key, value);
        break;
      }
      case 'u': {  // SETITEMS
        const std::vector<Value> items = pop_mark();
        TRAINDX_CHECK(items.size() % 2 == 0, CheckpointError, "{}: SETITEMS with an odd number ({}) of values", at(),
                      items.size());
        const Value target = top();
        for (size_t k = 0; k < items.size(); k += 2) set_item(target, items[k], items[k + 1]);
        break;
      }
      case 'a': {  // APPEND
        const Value value = pop();
        const Value target = top();
        TRAINDX_CHECK(target.kind == Kind::List, CheckpointError, "{}: APPEND to a {}, not a list", at(),
                      kind_name(target.kind));
        count_items(1);
        sequences_[target.ref].push_back(value);
        break;
      }
      case 'e': {  // APPENDS
        const std::vector<Value> items = pop_mark();
        const Value target = top();
        TRAINDX_CHECK(target.kind == Kind::List, CheckpointError, "{}: APPENDS to a {}, not a list", at(),
                      kind_name(target.kind));
        count_items(items.size());
        auto& list = sequences_[target.ref];
        list.insert(list.end(), items.begin(), items.end());
        break;
      }
      case 'q':  // BINPUT
        op_memo_put(read_le(1));
        break;
      case 'r':  // LONG_BINPUT
        op_memo_put(read_le(4));
        break;
      case 0x94:  // MEMOIZE
        op_memo_put(memo_.size());
        break;
      case 'h':  // BINGET
        op_memo_get(read_le(1));
        break;
      case 'j':  // LONG_BINGET
        op_memo_get(read_le(4));
        break;
      default:
        TRAINDX_FAIL(CheckpointError,
                     "{}: unsupported pickle opcode 0x{:02x} ('{}'); traindx reads only the data opcodes torch.save "
                     "emits",
                     at(), op, op >= 0x20 && op < 0x7f ? std::string(1, static_cast<char>(op)) : std::string("?"));
    }
  }
}

void Unpickler::op_global(std::string_view module, std::string_view name) {
  Value v{Kind::Global, 0, 0, 0};
  bool allowed = true;
  if (module == "collections" && name == "OrderedDict") {
    v.i = static_cast<int64_t>(Callable::OrderedDict);
  } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
    v.i = static_cast<int64_t>(Callable::RebuildTensorV2);
  } else if (module == "torch._utils" && name == "_rebuild_parameter") {
    v.i = static_cast<int64_t>(Callable::RebuildParameter);
  } else {
    allowed = false;
    if (module == "torch") {
      for (size_t k = 0; k < std::size(kStorageTypes); ++k) {
        if (name == kStorageTypes[k].name) {
          v.i = static_cast<int64_t>(Callable::StorageType);
          v.ref = k;
          allowed = true;
        }
      }
    }
  }
  if (!allowed) {
    // Shorten what a hostile file prints; names from honest pickles are short.
    const auto clip = [](std::string_view s) { return std::string(s.substr(0, 200)); };
    TRAINDX_FAIL(CheckpointError,
                 "{}: refusing to load '{}.{}': traindx never executes code from a file, and reads only dicts of "
                 "tensors (save model.state_dict(), not the model or other objects)",
                 at(), clip(module), clip(name));
  }
  push(v);
}

void Unpickler::op_reduce() {
  const Value args_value = pop();
  const Value callable = pop();
  TRAINDX_CHECK(callable.kind == Kind::Global, CheckpointError, "{}: REDUCE calls a {}, not a class or function",
                at(), kind_name(callable.kind));
  const std::vector<Value>& args = tuple_of(args_value, "REDUCE's arguments");
  switch (static_cast<Callable>(callable.i)) {
    case Callable::OrderedDict:
      // Pickle writes OrderedDict(items) as OrderedDict() followed by SETITEMS.
      TRAINDX_CHECK(args.empty(), CheckpointError, "{}: OrderedDict called with {} arguments; expected none", at(),
                    args.size());
      push(make_dict());
      return;
    case Callable::RebuildTensorV2:
      push(rebuild_tensor(args));
      return;
    case Callable::RebuildParameter:
      // _rebuild_parameter(data, requires_grad, backward_hooks): the parameter is its data for our purposes.
      TRAINDX_CHECK(args.size() == 3 && args[0].kind == Kind::Tensor, CheckpointError,
                    "{}: _rebuild_parameter expects (tensor, requires_grad, backward_hooks)", at());
      push(args[0]);
      return;
    case Callable::StorageType:
      break;
  }
  TRAINDX_FAIL(CheckpointError, "{}: torch.{} may only appear inside a storage's persistent id", at(),
               kStorageTypes[callable.ref].name);
}

Value Unpickler::rebuild_tensor(const std::vector<Value>& args) {
  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]); PyTorch
  // 2.x may add the metadata argument.
  TRAINDX_CHECK(args.size() == 6 || args.size() == 7, CheckpointError,
                "{}: _rebuild_tensor_v2 called with {} arguments; expected 6 or 7", at(), args.size());
  TRAINDX_CHECK(args[0].kind == Kind::Storage, CheckpointError,
                "{}: _rebuild_tensor_v2's first argument is a {}, not a storage", at(), kind_name(args[0].kind));
  TRAINDX_CHECK(args[4].kind == Kind::Bool && args[5].kind == Kind::Dict, CheckpointError,
                "{}: _rebuild_tensor_v2 expects requires_grad (bool) and backward_hooks (dict) as arguments 5 and 6",
                at());
  TensorSpec spec;
  spec.storage = args[0].ref;
  spec.offset = int_of(args[1], "a tensor's storage offset");
  const auto& size = tuple_of(args[2], "a tensor's size");
  const auto& stride = tuple_of(args[3], "a tensor's stride");
  TRAINDX_CHECK(size.size() == stride.size(), CheckpointError, "{}: a tensor has {} sizes but {} strides", at(),
                size.size(), stride.size());
  TRAINDX_CHECK(size.size() <= limits_.max_tensor_rank, CheckpointError,
                "{}: a tensor has {} dimensions, over TorchLoadLimits::max_tensor_rank ({})", at(), size.size(),
                limits_.max_tensor_rank);
  for (size_t d = 0; d < size.size(); ++d) {
    spec.size.push_back(int_of(size[d], "a tensor's size"));
    spec.stride.push_back(int_of(stride[d], "a tensor's stride"));
  }
  const StorageObject& store = storages_[spec.storage];
  const std::string what = fmt::format("{}: tensor of size [{}] stride [{}] offset {} on storage '{}' ({} elements)",
                                       at(), fmt::join(spec.size, ", "), fmt::join(spec.stride, ", "), spec.offset,
                                       store.key, store.numel);
  TRAINDX_CHECK(spec.offset >= 0, CheckpointError, "{}: negative storage offset", what);
  const auto count = element_count(spec.size);
  TRAINDX_CHECK(count.has_value(), CheckpointError, "{}: negative size, or more elements than fit in int64", what);
  if (*count > 0) {
    // The furthest element is offset + sum((size - 1) * stride); it must lie inside the storage.
    TRAINDX_CHECK(static_cast<uint64_t>(spec.offset) < store.numel, CheckpointError, "{}: reaches outside its storage",
                  what);
    uint64_t last = static_cast<uint64_t>(spec.offset);
    for (size_t d = 0; d < spec.size.size(); ++d) {
      TRAINDX_CHECK(spec.stride[d] >= 0, CheckpointError, "{}: negative stride", what);
      const auto extent = static_cast<uint64_t>(spec.size[d] - 1);
      const auto step = static_cast<uint64_t>(spec.stride[d]);
      TRAINDX_CHECK(step == 0 || extent <= (store.numel - last) / step, CheckpointError,
                    "{}: reaches outside its storage", what);
      last += extent * step;
    }
    TRAINDX_CHECK(last < store.numel, CheckpointError, "{}: reaches outside its storage", what);
  }
  tensors_.push_back(std::move(spec));
  return Value{Kind::Tensor, 0, 0, tensors_.size() - 1};
}

void Unpickler::op_build() {
  const Value state = pop();
  const Value target = top();
  // model.state_dict() is an OrderedDict whose BUILD state sets its `_metadata` attribute (per-module versions);
  // attributes are not data, so they are dropped.
  TRAINDX_CHECK(target.kind == Kind::Dict, CheckpointError,
                "{}: BUILD (setting object state) on a {}; only dict attributes are accepted and ignored", at(),
                kind_name(target.kind));
  (void)state;
}

void Unpickler::op_persistent_id() {
  const Value pid_value = pop();
  // ('storage', storage_type, key, location, numel): torch.save's reference to <archive>/data/<key>.
  const auto& pid = tuple_of(pid_value, "a persistent id");
  TRAINDX_CHECK(pid.size() == 5 && pid[0].kind == Kind::String && string(pid[0]) == "storage", CheckpointError,
                "{}: persistent id is not ('storage', type, key, location, numel)", at());
  TRAINDX_CHECK(pid[1].kind == Kind::Global && static_cast<Callable>(pid[1].i) == Callable::StorageType,
                CheckpointError, "{}: persistent id's storage type is not a torch.*Storage class", at());
  TRAINDX_CHECK(pid[2].kind == Kind::String && pid[3].kind == Kind::String, CheckpointError,
                "{}: persistent id's key and location must be strings", at());
  const std::string& key = string(pid[2]);
  const char* dtype = kStorageTypes[pid[1].ref].dtype;
  const int64_t numel = int_of(pid[4], "a storage's element count");
  TRAINDX_CHECK(numel >= 0, CheckpointError, "{}: storage '{}' has a negative element count", at(), key);

  const auto known = storage_by_key_.find(key);
  if (known != storage_by_key_.end()) {
    const StorageObject& s = storages_[known->second];
    TRAINDX_CHECK(std::string_view(s.dtype) == dtype && s.numel == static_cast<uint64_t>(numel), CheckpointError,
                  "{}: storage '{}' is referenced as {} x {} and as {} x {}", at(), key, s.numel, s.dtype, numel,
                  dtype);
    push(Value{Kind::Storage, 0, 0, known->second});
    return;
  }
  const auto bytes = files_.find("data/" + key);
  TRAINDX_CHECK(bytes.has_value(), CheckpointError, "{}: storage '{}' has no data/{} member in the archive", at(),
                key, key);
  const size_t element_size = *dtype_element_size(dtype);
  TRAINDX_CHECK(static_cast<uint64_t>(numel) <= bytes->size() / element_size &&
                    bytes->size() == static_cast<uint64_t>(numel) * element_size,
                CheckpointError, "{}: storage '{}' should hold {} {} elements ({} bytes) but data/{} has {} bytes",
                at(), key, numel, dtype, static_cast<uint64_t>(numel) * element_size, key, bytes->size());
  storages_.push_back(StorageObject{key, dtype, static_cast<uint64_t>(numel), *bytes});
  storage_by_key_.emplace(key, storages_.size() - 1);
  push(Value{Kind::Storage, 0, 0, storages_.size() - 1});
}

void Unpickler::op_memo_put(uint64_t index) {
  const Value v = top();
  const auto it = memo_.find(index);
  if (it != memo_.end()) {
    it->second = v;
    return;
  }
  TRAINDX_CHECK(memo_.size() < limits_.max_memo_entries, CheckpointError,
                "{}: the pickle memo exceeds {} entries (TorchLoadLimits::max_memo_entries)", at(),
                limits_.max_memo_entries);
  memo_.emplace(index, v);
}

void Unpickler::op_memo_get(uint64_t index) {
  const auto it = memo_.find(index);
  TRAINDX_CHECK(it != memo_.end(), CheckpointError, "{}: memo entry {} was never stored", at(), index);
  push(it->second);
}

/// Copies the elements a (bounds-checked) tensor spec selects, in row-major order. Strided views walk the
/// storage with an index counter; the common contiguous case is one memcpy.
std::string materialise(const TensorSpec& spec, const StorageObject& storage, size_t element_size,
                        bool swap_bytes) {
  const uint64_t count = *element_count(spec.size);
  std::string out(static_cast<size_t>(count * element_size), '\0');
  if (count > 0) {
    const size_t rank = spec.size.size();
    bool contiguous = true;
    int64_t expected = 1;
    for (size_t d = rank; d-- > 0;) {
      if (spec.size[d] != 1 && spec.stride[d] != expected) contiguous = false;
      expected *= spec.size[d];
    }
    const char* base = storage.bytes.data() + static_cast<size_t>(spec.offset) * element_size;
    if (contiguous) {
      std::memcpy(out.data(), base, out.size());
    } else {
      std::vector<int64_t> index(rank, 0);
      size_t source = 0;  // element offset from base
      char* dst = out.data();
      for (uint64_t n = 0; n < count; ++n, dst += element_size) {
        std::memcpy(dst, base + source * element_size, element_size);
        for (size_t d = rank; d-- > 0;) {  // odometer step, innermost dimension first
          if (++index[d] < spec.size[d]) {
            source += static_cast<size_t>(spec.stride[d]);
            break;
          }
          source -= static_cast<size_t>(spec.stride[d] * (spec.size[d] - 1));
          index[d] = 0;
        }
      }
    }
  }
  if (swap_bytes && element_size > 1) {
    for (size_t k = 0; k < out.size(); k += element_size) std::reverse(out.begin() + k, out.begin() + k + element_size);
  }
  return out;
}

/// The archive's folder: torch.save names it after the file's stem, and every member lives under it.
std::string archive_prefix(const std::vector<ZipMember>& members, const std::string& source) {
  std::string prefix;
  for (const auto& member : members) {
    const size_t slash = member.name.find('/');
    if (slash != std::string::npos && member.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      TRAINDX_CHECK(prefix.empty(), CheckpointError,
                    "{}: the archive holds several pickles ({}data.pkl and {}); refusing an ambiguous archive",
                    source, prefix, member.name);
      prefix = member.name.substr(0, slash + 1);
    }
  }
  TRAINDX_CHECK(!prefix.empty(), CheckpointError,
                "{}: a zip archive without <archive>/data.pkl; not written by torch.save (TorchScript archives "
                "keep data.pkl too, but hold code: load those with torch::jit::load)",
                source);
  return prefix;
}

}  // namespace

TorchStateDict parse_torch_state_dict(std::string_view zip_bytes, const std::string& source,
                                      const TorchLoadLimits& limits) {
  // torch.save before 1.6 (or with _use_new_zipfile_serialization=False) writes raw pickles, which start with
  // PROTO; give that case its own message rather than "not a zip archive".
  TRAINDX_CHECK(zip_bytes.empty() || zip_bytes[0] != '\x80', CheckpointError,
                "{}: PyTorch's legacy (pre-1.6, non-zip) serialization format is not supported; re-save it with "
                "torch.save in PyTorch >= 1.6",
                source);
  const std::vector<ZipMember> members = read_zip_directory(zip_bytes, source);
  const std::string prefix = archive_prefix(members, source);
  const StorageFiles files(zip_bytes, members, prefix, source);

  bool swap_bytes = false;
  if (const auto order = files.find("byteorder")) {
    TRAINDX_CHECK(*order == "little" || *order == "big", CheckpointError,
                  "{}: {}byteorder is '{}', not 'little' or 'big'", source, prefix,
                  std::string(order->substr(0, 16)));
    swap_bytes = *order == "big";
  }

  const auto pickle = files.find("data.pkl");
  Unpickler machine(*pickle, files, limits, source);
  const Value root = machine.run();
  TRAINDX_CHECK(root.kind == Kind::Dict, CheckpointError,
                "{}: data.pkl holds a {}, not a dict of tensors (save model.state_dict())", source,
                kind_name(root.kind));

  const uint64_t max_output = limits.max_output_bytes != 0
                                  ? limits.max_output_bytes
                                  : 4 * static_cast<uint64_t>(zip_bytes.size()) + (uint64_t{1} << 30);
  uint64_t output = 0;
  TorchStateDict result;
  size_t nested_tensors = 0;
  for (const auto& [key, value] : machine.dict(root).items) {
    const std::string name = key.kind == Kind::String ? machine.string(key) : std::string();
    if (value.kind != Kind::Tensor) {
      result.skipped.push_back(key.kind == Kind::String ? name : fmt::format("<{} key>", kind_name(key.kind)));
      if (value.kind == Kind::Dict) {
        for (const auto& inner : machine.dict(value).items) nested_tensors += inner.second.kind == Kind::Tensor;
      }
      continue;
    }
    TRAINDX_CHECK(key.kind == Kind::String, CheckpointError,
                  "{}: a tensor is stored under a {} key; state_dict keys are strings", source, kind_name(key.kind));
    const TensorSpec& spec = machine.tensor(value);
    const StorageObject& storage = machine.storage(spec.storage);
    const size_t element_size = *dtype_element_size(storage.dtype);
    const uint64_t bytes = *element_count(spec.size) * element_size;  // bounded by rebuild_tensor's checks
    TRAINDX_CHECK(bytes <= max_output - output, CheckpointError,
                  "{}: tensor '{}' would bring the loaded tensors to more than {} bytes "
                  "(TorchLoadLimits::max_output_bytes; views can describe far more data than the file holds)",
                  source, name, max_output);
    output += bytes;
    RawTensor raw{storage.dtype, spec.size, materialise(spec, storage, element_size, swap_bytes)};
    validate_raw_tensor(raw, fmt::format("{}: tensor '{}'", source, name));
    result.tensors.emplace_back(name, std::move(raw));
  }
  TRAINDX_CHECK(!result.tensors.empty() || nested_tensors == 0, CheckpointError,
                "{}: no tensors at the top level, but {} inside nested dicts ({}); traindx reads a flat "
                "state_dict: save the inner dict (e.g. checkpoint['model']) on its own",
                source, nested_tensors, fmt::join(result.skipped, ", "));
  return result;
}

}  // namespace traindx
