#pragma once

// Per-thread cells for counters that many threads bump: each writing thread updates its own
// 64-byte-aligned cell with a plain load and store, and readers add the cells up. No update
// executes a locked instruction (each costs a few nanoseconds on an idle core, and far more when
// cores pass the line between them), and no two threads write the same cache line.
//
// Writer slots: a thread takes the lowest free slot on its first update through any ThreadCells
// and gives it back when it exits, so a slot below kOwnedWriterSlots has at most one writer at a
// time (the next owner sees the previous one's updates: the slot table's mutex orders them).
// Threads beyond that many at once share slot kOwnedWriterSlots, which is updated with atomic
// read-modify-writes. Readers may run on any thread, concurrently with writers, and see each
// word's recent value.

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace infergate {

inline constexpr std::size_t kOwnedWriterSlots = 31;
inline constexpr std::size_t kWriterSlots = kOwnedWriterSlots + 1;

namespace thread_cells_detail {
inline constexpr std::size_t kNoSlotYet = ~std::size_t{0};
extern constinit thread_local std::size_t current_slot;
std::size_t take_slot();
}  // namespace thread_cells_detail

// The calling thread's writer slot: below kOwnedWriterSlots when the thread owns it.
inline std::size_t writer_slot() {
  const std::size_t slot = thread_cells_detail::current_slot;
  return slot != thread_cells_detail::kNoSlotYet ? slot : thread_cells_detail::take_slot();
}

// `width` 64-bit words per writer slot; a slot's cell is allocated on its first update. Words
// hold counts, or doubles by their bits.
class ThreadCells {
 public:
  using Word = std::atomic<std::uint64_t>;

  explicit ThreadCells(std::size_t width);
  ~ThreadCells();
  ThreadCells(const ThreadCells&) = delete;
  ThreadCells& operator=(const ThreadCells&) = delete;

  // The calling thread's `width` words; `owned` tells whether the thread is their only writer,
  // to be passed to the add functions.
  Word* mine(bool& owned) {
    const std::size_t slot = writer_slot();
    owned = slot < kOwnedWriterSlots;
    Word* cell = cells_[slot].load(std::memory_order_acquire);
    return cell != nullptr ? cell : allocate(slot);
  }

  static void add_count(Word& word, std::uint64_t amount, bool owned) {
    if (owned) {
      word.store(word.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
    } else {
      word.fetch_add(amount, std::memory_order_relaxed);
    }
  }
  static void add_double(Word& word, double amount, bool owned) {
    if (owned) {
      const double total = std::bit_cast<double>(word.load(std::memory_order_relaxed)) + amount;
      word.store(std::bit_cast<std::uint64_t>(total), std::memory_order_relaxed);
    } else {
      add_double_shared(word, amount);
    }
  }

  // Word `index` summed over every slot, as counts or as doubles.
  std::uint64_t count_total(std::size_t index) const;
  double double_total(std::size_t index) const;
  // The bytes of the cells allocated so far.
  std::size_t heap_bytes() const;

 private:
  Word* allocate(std::size_t slot);
  static void add_double_shared(Word& word, double amount);

  std::size_t allocated_words_;  // per cell: the width rounded up to whole cache lines
  std::atomic<Word*> cells_[kWriterSlots] = {};
};

}  // namespace infergate
