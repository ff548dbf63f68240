// ShuffleBatcher: the permutation of epoch e is a pure function of (seed, e), so a saved BatcherState is enough to
// resume the exact batch sequence, on any platform (no std::shuffle, whose algorithm the standard leaves open).
#include <charconv>

#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace traindx {

Json BatcherState::to_json() const {
  return Json{{"epoch", epoch}, {"position", position}, {"seed", std::to_string(seed)}};
}

BatcherState BatcherState::from_json(const Json& doc) {
  TRAINDX_CHECK(doc.is_object(), DataError, "malformed batcher state: expected a JSON object, got {}", doc.dump());
  BatcherState s;
  for (const char* key : {"epoch", "position"}) {
    TRAINDX_CHECK(doc.contains(key) && doc[key].is_number_integer() && doc[key].get<int64_t>() >= 0, DataError,
                  "malformed batcher state: '{}' must be a non-negative integer in {}", key, doc.dump());
  }
  s.epoch = doc["epoch"].get<int64_t>();
  s.position = doc["position"].get<int64_t>();
  TRAINDX_CHECK(doc.contains("seed"), DataError, "malformed batcher state: 'seed' is missing in {}", doc.dump());
  const Json& seed = doc["seed"];
  if (seed.is_number_unsigned()) {
    s.seed = seed.get<uint64_t>();
  } else {
    bool ok = seed.is_string();
    if (ok) {
      const std::string text = seed.get<std::string>();
      const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), s.seed);
      ok = !text.empty() && ec == std::errc() && ptr == text.data() + text.size();
    }
    TRAINDX_CHECK(ok, DataError, "malformed batcher state: 'seed' must be an unsigned 64-bit integer (as a decimal "
                  "string), got {}", seed.dump());
  }
  return s;
}

ShuffleBatcher::ShuffleBatcher(int64_t num_examples, int64_t batch_size, uint64_t seed, bool shuffle, bool drop_last)
    : num_examples_(num_examples), batch_size_(batch_size), shuffle_(shuffle), drop_last_(drop_last) {
  TRAINDX_CHECK(num_examples >= 0, DataError, "a batcher needs a non-negative number of examples, got {}",
                num_examples);
  TRAINDX_CHECK(batch_size >= 1, ConfigError, "batch size must be at least 1, got {}", batch_size);
  state_.seed = seed;
}

int64_t ShuffleBatcher::batches_per_epoch() const {
  return drop_last_ ? num_examples_ / batch_size_ : (num_examples_ + batch_size_ - 1) / batch_size_;
}

void ShuffleBatcher::build_permutation() {
  permutation_.resize(static_cast<size_t>(num_examples_));
  for (int64_t i = 0; i < num_examples_; ++i) permutation_[static_cast<size_t>(i)] = i;
  if (shuffle_) {
    // Mix the epoch into the seed, then discard two outputs so that neighbouring (seed, epoch) pairs decorrelate.
    SplitMix64 rng(state_.seed ^ (static_cast<uint64_t>(state_.epoch) * 0x9E3779B97F4A7C15ULL));
    rng.next();
    rng.next();
    for (size_t i = permutation_.size(); i > 1; --i) {
      const auto j = static_cast<size_t>(rng.below(i));
      std::swap(permutation_[i - 1], permutation_[j]);
    }
  }
  permutation_epoch_ = state_.epoch;
}

Batch ShuffleBatcher::next() {
  TRAINDX_CHECK(batches_per_epoch() > 0, DataError,
                "no batch to serve: {} examples with batch size {}{}", num_examples_, batch_size_,
                drop_last_ ? " and drop_last (the only batch would be partial)" : "");
  if (permutation_epoch_ != state_.epoch) build_permutation();
  const int64_t epoch_end = drop_last_ ? batches_per_epoch() * batch_size_ : num_examples_;
  const int64_t begin = state_.position;
  const int64_t end = std::min(begin + batch_size_, epoch_end);
  Batch batch;
  batch.epoch = state_.epoch;
  batch.indices = torch::empty({end - begin}, torch::kLong);
  std::copy(permutation_.begin() + begin, permutation_.begin() + end, batch.indices.data_ptr<int64_t>());
  state_.position = end;
  if (end >= epoch_end) {
    // Normalise to "epoch done" right away so that a state saved between epochs reads {epoch + 1, 0}.
    batch.last_in_epoch = true;
    ++state_.epoch;
    state_.position = 0;
  }
  return batch;
}

void ShuffleBatcher::restore(const BatcherState& state) {
  const int64_t epoch_end = drop_last_ ? batches_per_epoch() * batch_size_ : num_examples_;
  TRAINDX_CHECK(state.epoch >= 0, DataError, "cannot restore batcher state: epoch {} is negative", state.epoch);
  TRAINDX_CHECK(state.position >= 0 && state.position <= epoch_end, DataError,
                "cannot restore batcher state: position {} is beyond the epoch of {} examples ({} examples, batch "
                "size {}{}); was it saved for other data?",
                state.position, epoch_end, num_examples_, batch_size_, drop_last_ ? ", drop_last" : "");
  state_ = state;
  if (epoch_end > 0 && state_.position == epoch_end) {
    ++state_.epoch;
    state_.position = 0;
  }
  permutation_epoch_ = -1;  // the seed may have changed
}

}  // namespace traindx
