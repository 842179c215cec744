#include "common/thread_cells.h"

#include <bit>
#include <bitset>
#include <mutex>
#include <new>

namespace infergate {
namespace thread_cells_detail {
namespace {

constexpr std::align_val_t kCellAlignment{64};

std::mutex slots_mu;
std::bitset<kOwnedWriterSlots> slots_taken;  // guarded by slots_mu

// Gives the thread's slot back when it exits. Updates made later, from other thread-local
// destructors, go to the shared slot.
struct SlotRelease {
  ~SlotRelease() {
    if (current_slot < kOwnedWriterSlots) {
      std::lock_guard lock(slots_mu);
      slots_taken.reset(current_slot);
    }
    current_slot = kOwnedWriterSlots;
  }
};

}  // namespace

constinit thread_local std::size_t current_slot = kNoSlotYet;

std::size_t take_slot() {
  thread_local SlotRelease release;
  (void)release;  // constructed on the first call, destroyed at thread exit
  std::size_t slot = kOwnedWriterSlots;
  {
    std::lock_guard lock(slots_mu);
    for (std::size_t candidate = 0; candidate < kOwnedWriterSlots; ++candidate) {
      if (!slots_taken.test(candidate)) {
        slots_taken.set(candidate);
        slot = candidate;
        break;
      }
    }
  }
  current_slot = slot;
  return slot;
}

}  // namespace thread_cells_detail

using thread_cells_detail::kCellAlignment;

ThreadCells::ThreadCells(std::size_t width) : width_(width) {
  // The shared slot's cell exists from the start: its writers race to use it, not to create it.
  cells_[kOwnedWriterSlots].store(new (kCellAlignment) Word[width_](), std::memory_order_release);
}

ThreadCells::~ThreadCells() {
  for (auto& cell : cells_) {
    Word* words = cell.load(std::memory_order_acquire);
    if (words != nullptr) operator delete[](words, kCellAlignment);
  }
}

ThreadCells::Word* ThreadCells::allocate(std::size_t slot) {
  // Only the slot's owner gets here (the shared slot's cell always exists), so nobody else
  // installs this cell.
  Word* words = new (kCellAlignment) Word[width_]();
  cells_[slot].store(words, std::memory_order_release);
  return words;
}

void ThreadCells::add_double_shared(Word& word, double amount) {
  std::uint64_t expected = word.load(std::memory_order_relaxed);
  while (!word.compare_exchange_weak(
      expected, std::bit_cast<std::uint64_t>(std::bit_cast<double>(expected) + amount),
      std::memory_order_relaxed)) {
  }
}

std::uint64_t ThreadCells::count_total(std::size_t index) const {
  std::uint64_t total = 0;
  for (const auto& cell : cells_) {
    const Word* words = cell.load(std::memory_order_acquire);
    if (words != nullptr) total += words[index].load(std::memory_order_relaxed);
  }
  return total;
}

double ThreadCells::double_total(std::size_t index) const {
  double total = 0;
  for (const auto& cell : cells_) {
    const Word* words = cell.load(std::memory_order_acquire);
    if (words != nullptr) {
      total += std::bit_cast<double>(words[index].load(std::memory_order_relaxed));
    }
  }
  return total;
}

}  // namespace infergate
