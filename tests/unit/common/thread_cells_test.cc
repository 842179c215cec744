#include "common/thread_cells.h"

#include <gtest/gtest.h>

#include <latch>
#include <set>
#include <thread>
#include <vector>

namespace infergate {
namespace {

// Runs `body(slot)` on `thread_count` threads that all hold their slots at once.
template <typename Body>
std::vector<std::size_t> run_together(std::size_t thread_count, Body body) {
  std::vector<std::size_t> slots(thread_count);
  std::latch all_have_slots(static_cast<std::ptrdiff_t>(thread_count));
  std::vector<std::thread> threads;
  for (std::size_t thread_idx = 0; thread_idx < thread_count; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      slots[thread_idx] = writer_slot();
      all_have_slots.arrive_and_wait();
      body();
    });
  }
  for (auto& thread : threads) thread.join();
  return slots;
}

TEST(ThreadCellsTest, ThreadsHoldingSlotsAtOnceOwnDistinctSlotsThenShareTheLast) {
  const std::size_t extra = 5;
  const auto slots = run_together(kOwnedWriterSlots + extra, [] {});
  // (Other threads of the test binary may hold a few slots too.)
  std::multiset<std::size_t> taken(slots.begin(), slots.end());
  EXPECT_GE(taken.count(kOwnedWriterSlots), extra);
  for (std::size_t slot = 0; slot < kOwnedWriterSlots; ++slot) {
    EXPECT_LE(taken.count(slot), 1u) << "slot " << slot;
  }
  // Those threads have exited: their slots are free again.
  for (std::size_t slot : run_together(4, [] {})) EXPECT_LT(slot, kOwnedWriterSlots);
}

TEST(ThreadCellsTest, SumsEveryThreadsUpdatesIncludingTheSharedSlotsAndEarlierOwners) {
  ThreadCells cells(2);
  constexpr int kUpdates = 5000;
  auto update = [&] {
    for (int update_idx = 0; update_idx < kUpdates; ++update_idx) {
      bool owned = false;
      ThreadCells::Word* words = cells.mine(owned);
      ThreadCells::add_count(words[0], 1, owned);
      ThreadCells::add_double(words[1], 0.25, owned);
    }
  };
  run_together(kOwnedWriterSlots + 7, update);  // 8 threads race on the shared slot
  run_together(3, update);                      // new owners of slots used before
  const std::uint64_t threads = kOwnedWriterSlots + 7 + 3;
  EXPECT_EQ(cells.count_total(0), threads * kUpdates);
  EXPECT_EQ(cells.double_total(1), static_cast<double>(threads * kUpdates) * 0.25);
  // Cells take whole cache lines: the shared one and at least one owned one.
  EXPECT_GE(cells.heap_bytes(), 2 * 64u);
  EXPECT_EQ(cells.heap_bytes() % 64, 0u);
}

}  // namespace
}  // namespace infergate
