#include "common/thread_cells.h"

#include <bit>
#include <bitset>
#include <mutex>
#include <new>

namespace infergate {
namespace thread_cells_detail {
namespace {

constexpr std::size_t kCellBytes = 64;
constexpr std::align_val_t kCellAlignment{kCellBytes};

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
using thread_cells_detail::kCellBytes;

// Cells take whole cache lines, so that no other allocation shares a line with one.
ThreadCells::ThreadCells(std::size_t width)
    : allocated_words_((width * sizeof(Word) + kCellBytes - 1) / kCellBytes * kCellBytes /
                       sizeof(Word)) {
  // The shared slot's cell exists from the start: its writers race to use it, not to create it.
  cells_[kOwnedWriterSlots].store(new (kCellAlignment) Word[allocated_words_](),
                                  std::memory_order_release);
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
  Word* words = new (kCellAlignment) Word[allocated_words_]();
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

std::size_t ThreadCells::heap_bytes() const {
  std::size_t cells = 0;
  for (const auto& cell : cells_) cells += cell.load(std::memory_order_relaxed) != nullptr ? 1 : 0;
  return cells * allocated_words_ * sizeof(Word);
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
