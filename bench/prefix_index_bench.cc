// Prefix-cache hashing and index microbenchmarks (scheduling facts §4).
//   build-*/bench/prefix_index_bench [--benchmark_filter=...]
// The index fixtures model a pool after warm-up: 64 shared system prompts (2 KiB, 32 blocks), each
// routed with affinity to its own slice of servers (10% elsewhere), followed by 2–13 KiB of
// per-request text; the index is filled until every server's LRU is full.

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/random.h"
#include "scheduling/prefix_hash.h"
#include "scheduling/prefix_index.h"

namespace infergate::scheduling {
namespace {

constexpr int kGroups = 64;
constexpr int kSystemPromptBlocks = 32;

std::size_t allocated_bytes() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

struct Workload {
  explicit Workload(std::uint64_t seed) : random(seed) {
    for (auto& prompt : system_prompts) {
      prompt.resize(kSystemPromptBlocks);
      for (BlockHash& hash : prompt) hash = random.next_u64();
    }
  }

  // A request: one group's system prompt, then unique blocks. Returns its group.
  int next_request(std::vector<BlockHash>& hashes) {
    const int group = static_cast<int>(random.next_below(kGroups));
    hashes = system_prompts[group];
    for (auto tail = 32 + random.next_below(180); tail > 0; --tail) {
      hashes.push_back(random.next_u64());
    }
    return group;
  }

  // Each group has a home slice of servers/kGroups servers (at least 3); 10% go anywhere.
  ServerId route(int group, ServerId servers) {
    if (random.next_below(10) == 0) return static_cast<ServerId>(random.next_below(servers));
    const ServerId slice = std::max<ServerId>(3, servers / kGroups);
    return static_cast<ServerId>((group * slice + random.next_below(slice)) % servers);
  }

  SplitMix64 random;
  std::vector<BlockHash> system_prompts[kGroups];
};

struct FilledIndex {
  std::unique_ptr<PrefixIndex> index;
  std::vector<std::vector<BlockHash>> recent;  // requests added last (full hits)
  std::size_t allocator_bytes = 0;
};

// Capacity per server: the default 31,250 for 100 servers; 8,000 for 1,000 servers to keep the
// fixture within a shared machine's memory (8M entries).
std::size_t capacity_for(ServerId servers) {
  return servers <= 100 ? kDefaultLruCapacityPerServer : 8'000;
}

FilledIndex& filled_index(ServerId servers) {
  static std::map<ServerId, FilledIndex> cache;
  auto [it, inserted] = cache.try_emplace(servers);
  FilledIndex& filled = it->second;
  if (!inserted) return filled;
  const std::size_t capacity = capacity_for(servers);
  const std::size_t before = allocated_bytes();
  filled.index =
      std::make_unique<PrefixIndex>(PrefixIndexOptions{.default_capacity_per_server = capacity});
  Workload workload(servers);
  std::vector<BlockHash> hashes;
  // ~1.5 × the total capacity in blocks, so every LRU is full and has evicted.
  const std::size_t adds = servers * capacity * 3 / 2 / (kSystemPromptBlocks + 122);
  for (std::size_t add = 0; add < adds; ++add) {
    const int group = workload.next_request(hashes);
    filled.index->add(workload.route(group, servers), hashes);
    if (adds - add <= 512) filled.recent.push_back(hashes);
  }
  filled.allocator_bytes = allocated_bytes() - before;
  return filled;
}

void BM_HashPrompt16KiB(benchmark::State& state) {
  std::string prompt;
  SplitMix64 random(1);
  while (prompt.size() < 16384) prompt.push_back(static_cast<char>('a' + random.next_below(26)));
  std::vector<BlockHash> hashes;
  for (auto _ : state) {
    compute_prefix_hashes(prompt, "meta-llama/Llama-3.1-8B-Instruct", "", kDefaultBlockSizeTokens,
                          kDefaultMaxPrefixBlocks, hashes);
    benchmark::DoNotOptimize(hashes.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * prompt.size()));
  state.counters["blocks"] = static_cast<double>(hashes.size());
}
BENCHMARK(BM_HashPrompt16KiB);

void report_memory(benchmark::State& state, const FilledIndex& filled) {
  const PrefixIndexStats stats = filled.index->stats();
  state.counters["entries"] = static_cast<double>(stats.entries);
  state.counters["hashes"] = static_cast<double>(stats.distinct_hashes);
  state.counters["bytes_per_entry"] =
      static_cast<double>(stats.memory_bytes) / static_cast<double>(stats.entries);
  state.counters["malloc_bytes_per_entry"] =
      static_cast<double>(filled.allocator_bytes) / static_cast<double>(stats.entries);
}

// Half the lookups are requests added recently (full hits on one server plus the shared system
// prompt on its group's servers), half are new requests of a known group (system prompt hit, then
// a miss).
void BM_Match(benchmark::State& state) {
  const auto servers = static_cast<ServerId>(state.range(0));
  FilledIndex& filled = filled_index(servers);
  Workload workload(99);
  std::vector<std::vector<BlockHash>> requests = filled.recent;
  std::vector<BlockHash> hashes;
  for (std::size_t idx = 0; idx < filled.recent.size(); ++idx) {
    workload.next_request(hashes);
    requests.push_back(hashes);
  }
  std::vector<std::uint32_t> counts(servers);
  std::size_t next = 0;
  std::uint64_t blocks = 0;
  for (auto _ : state) {
    const auto& request = requests[next++ % requests.size()];
    benchmark::DoNotOptimize(filled.index->match(request, counts));
    blocks += request.size();
  }
  state.counters["blocks_per_match"] =
      static_cast<double>(blocks) / static_cast<double>(state.iterations());
  report_memory(state, filled);
}
BENCHMARK(BM_Match)->Arg(100)->Arg(1000);

// Steady state: the servers' LRUs are full, so every new block also evicts one.
void BM_Add(benchmark::State& state) {
  const auto servers = static_cast<ServerId>(state.range(0));
  FilledIndex& filled = filled_index(servers);
  Workload workload(1234);
  std::vector<BlockHash> hashes;
  std::uint64_t blocks = 0;
  for (auto _ : state) {
    // Generating the request (~1 ns per block) is timed too: pausing the timer costs more.
    const ServerId server = workload.route(workload.next_request(hashes), servers);
    filled.index->add(server, hashes);
    blocks += hashes.size();
  }
  state.counters["blocks_per_add"] =
      static_cast<double>(blocks) / static_cast<double>(state.iterations());
  report_memory(state, filled);
}
BENCHMARK(BM_Add)->Arg(100)->Arg(1000);

}  // namespace
}  // namespace infergate::scheduling

BENCHMARK_MAIN();
