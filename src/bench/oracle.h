#pragma once

// The ORACLE bound on the prefix-cache hit rate for the requests an `infergate bench` run sent
// (benchmarks facts §5.1): an infinite cache behind perfect routing, computed with the
// simulation's own PrefixOracle (sim/cluster.h) on the token ids and block hashes `infergate sim`
// derives from each request body, so that it is in the same tokens as the servers'
// vllm:prefix_cache_hits / queries counters.
//
// Called by `infergate bench` after a stage has finished (never during the load). Pure and
// single-threaded: no I/O.

#include <cstdint>

#include "bench/load.h"
#include "bench/workload.h"

namespace infergate::bench {

struct OracleBound {
  int block_size = 16;
  std::uint64_t prompt_tokens = 0;  // the measured requests' prompt tokens
  std::uint64_t hit_tokens = 0;     // of which an infinite, perfectly routed cache would hold
  double hit_rate = 0;              // hit_tokens / prompt_tokens; 0 without measured requests
};

// Replays every request of `run` (warm-up included) in launch order, each rebuilt from
// `workload` by its index, against one global set of block hashes that starts empty (as the
// servers' caches do after `--before-each` resets them); the measured requests' prompts and hits
// are counted, the warm-up's only fill the set. Requests whose body the model server could not
// parse are skipped. `block_size` >= 1 (the servers' --block-size).
OracleBound oracle_bound(const Workload& workload, const RunResult& run, int block_size);

}  // namespace infergate::bench
