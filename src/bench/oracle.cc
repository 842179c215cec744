#include "bench/oracle.h"

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "request/openai_request.h"
#include "request/prompt.h"
#include "sim/cluster.h"
#include "sim/kv_cache.h"

namespace infergate::bench {

OracleBound oracle_bound(const Workload& workload, const RunResult& run, int block_size) {
  OracleBound bound;
  bound.block_size = block_size;
  sim::PrefixOracle oracle(block_size);
  const request::ApiKind kind = request::api_kind_from_path(workload.path());
  // Workloads cycle through a pool of prompts: tokenise each distinct prompt once.
  std::unordered_map<std::string, std::vector<std::uint32_t>> tokens_by_prompt;
  for (const RequestRecord& record : run.records) {
    const GeneratedRequest generated = workload.request(record.index);
    auto parsed = request::parse_openai_request(kind, generated.body);
    if (!parsed) continue;
    std::string key(parsed->prefix_bytes());
    auto it = tokens_by_prompt.find(key);
    if (it == tokens_by_prompt.end()) {
      it = tokens_by_prompt.emplace(std::move(key), request::prompt_token_ids(*parsed)).first;
    }
    const std::uint64_t hit =
        oracle.add(it->second, sim::root_block_hash(parsed->model, parsed->cache_salt));
    if (!record.measured) continue;
    bound.hit_tokens += hit;
    bound.prompt_tokens += it->second.size();
  }
  bound.hit_rate =
      bound.prompt_tokens == 0 ? 0.0 : static_cast<double>(bound.hit_tokens) / bound.prompt_tokens;
  return bound;
}

}  // namespace infergate::bench
