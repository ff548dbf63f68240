// ShuffleBatcher: complete epochs, seeded order, exact resume, drop_last, and state validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "traindx/core/error.h"
#include "traindx/data/data.h"

namespace {

using traindx::Batch;
using traindx::BatcherState;
using traindx::DataError;
using traindx::ShuffleBatcher;

std::vector<int64_t> indices(const Batch& b) {
  return std::vector<int64_t>(b.indices.data_ptr<int64_t>(), b.indices.data_ptr<int64_t>() + b.indices.numel());
}

std::vector<int64_t> epoch_order(ShuffleBatcher& batcher) {
  std::vector<int64_t> order;
  for (int64_t i = 0; i < batcher.batches_per_epoch(); ++i) {
    const auto b = indices(batcher.next());
    order.insert(order.end(), b.begin(), b.end());
  }
  return order;
}

TEST(DataBatcherTest, EveryIndexExactlyOncePerEpoch) {
  ShuffleBatcher batcher(103, 10, 42);
  EXPECT_EQ(batcher.batches_per_epoch(), 11);
  std::vector<std::vector<int64_t>> epochs;
  for (int e = 0; e < 3; ++e) {
    std::vector<int64_t> order;
    for (int i = 0; i < 11; ++i) {
      const Batch b = batcher.next();
      EXPECT_EQ(b.epoch, e);
      EXPECT_EQ(b.last_in_epoch, i == 10);
      EXPECT_EQ(b.indices.numel(), i == 10 ? 3 : 10);
      EXPECT_EQ(b.indices.scalar_type(), torch::kLong);
      const auto idx = indices(b);
      order.insert(order.end(), idx.begin(), idx.end());
    }
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> expected(103);
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(sorted, expected);
    epochs.push_back(order);
  }
  EXPECT_NE(epochs[0], epochs[1]);  // a fresh permutation each epoch
  EXPECT_NE(epochs[1], epochs[2]);
  EXPECT_EQ(batcher.state(), (BatcherState{3, 0, 42}));
}

TEST(DataBatcherTest, SameSeedSameOrderOtherSeedOtherOrder) {
  ShuffleBatcher a(50, 8, 7), b(50, 8, 7), c(50, 8, 8);
  const auto oa = epoch_order(a), ob = epoch_order(b), oc = epoch_order(c);
  EXPECT_EQ(oa, ob);
  EXPECT_NE(oa, oc);
}

TEST(DataBatcherTest, NoShuffleServesTheIdentityOrder) {
  ShuffleBatcher batcher(7, 3, 99, /*shuffle=*/false);
  EXPECT_EQ(epoch_order(batcher), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(epoch_order(batcher), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(DataBatcherTest, RestoreMidEpochGivesTheIdenticalContinuation) {
  ShuffleBatcher original(37, 5, 1234);
  for (int i = 0; i < 11; ++i) original.next();  // into the second epoch (8 batches per epoch)
  const BatcherState saved = original.state();
  EXPECT_EQ(saved.epoch, 1);
  EXPECT_EQ(saved.position, 15);
  std::vector<std::vector<int64_t>> expected;
  for (int i = 0; i < 20; ++i) expected.push_back(indices(original.next()));

  ShuffleBatcher resumed(37, 5, 0);  // the seed comes from the state
  resumed.restore(BatcherState::from_json(traindx::Json::parse(saved.to_json().dump())));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(indices(resumed.next()), expected[static_cast<size_t>(i)]) << i;
  EXPECT_EQ(resumed.state(), original.state());
}

TEST(DataBatcherTest, DropLastDropsThePartialBatch) {
  ShuffleBatcher batcher(103, 10, 5, true, /*drop_last=*/true);
  EXPECT_EQ(batcher.batches_per_epoch(), 10);
  std::vector<int64_t> seen;
  for (int i = 0; i < 10; ++i) {
    const Batch b = batcher.next();
    EXPECT_EQ(b.indices.numel(), 10);
    EXPECT_EQ(b.last_in_epoch, i == 9);
    const auto idx = indices(b);
    seen.insert(seen.end(), idx.begin(), idx.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(batcher.next().epoch, 1);
  ShuffleBatcher none(5, 10, 0, true, true);
  EXPECT_EQ(none.batches_per_epoch(), 0);
  EXPECT_THROW(none.next(), DataError);
}

TEST(DataBatcherTest, BadRestoreAndMalformedStateThrow) {
  ShuffleBatcher batcher(20, 4, 1);
  EXPECT_THROW(batcher.restore(BatcherState{0, 21, 1}), DataError);
  EXPECT_THROW(batcher.restore(BatcherState{-1, 0, 1}), DataError);
  ShuffleBatcher dropping(22, 4, 1, true, true);
  EXPECT_THROW(dropping.restore(BatcherState{0, 21, 1}), DataError);  // only 20 are served per epoch
  // A state at the very end of an epoch resumes at the start of the next one.
  batcher.restore(BatcherState{2, 20, 1});
  EXPECT_EQ(batcher.state(), (BatcherState{3, 0, 1}));
  EXPECT_THROW(BatcherState::from_json(traindx::Json{{"epoch", 1}}), DataError);
  EXPECT_THROW(BatcherState::from_json(traindx::Json{{"epoch", 1}, {"position", -2}, {"seed", "1"}}), DataError);
  EXPECT_THROW(BatcherState::from_json(traindx::Json{{"epoch", 1}, {"position", 2}, {"seed", "12x"}}), DataError);
  EXPECT_THROW(ShuffleBatcher(10, 0, 1), traindx::ConfigError);
}

TEST(DataBatcherTest, StateJsonKeepsSeedsBeyondInt64) {
  const BatcherState s{4, 12, 0xFFFFFFFFFFFFFFF0ULL};
  const traindx::Json doc = s.to_json();
  EXPECT_EQ(doc["seed"], "18446744073709551600");
  EXPECT_EQ(BatcherState::from_json(traindx::Json::parse(doc.dump())), s);
  EXPECT_EQ(BatcherState::from_json(traindx::Json{{"epoch", 4}, {"position", 12}, {"seed", 7u}}).seed, 7u);
}

}  // namespace
