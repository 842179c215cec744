#pragma once

// The model servers' own prefix-cache counters around a benchmark stage (`infergate bench
// --server-metrics URL,...`): each server's /metrics is scraped when the measured window opens and
// again when the stage has drained, and the stage's hit rate is
//   sum over servers of delta(hits) / sum over servers of delta(queries),
// the share of prompt tokens the engines found in their prefix caches (vLLM's
// vllm:prefix_cache_hits / vllm:prefix_cache_queries, counted in tokens).
//
// Parsing is the project's one Prometheus text parser (prom/parser.h); scraping is the project's
// HTTP client. Pure parts (parse_prefix_cache_counters, prefix_cache_delta) take text and numbers;
// scrape_prefix_cache is a coroutine on the caller's executor. Errors are values: a server that
// cannot be scraped, or whose text has no prefix-cache counters, is reported by name and left out
// of the sums.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bench/load.h"
#include "common/status.h"

namespace infergate::bench {

// Cumulative prefix-cache counters of one server, in tokens.
struct PrefixCacheCounters {
  double queries = 0;
  double hits = 0;
};

// Sums every series of vllm:prefix_cache_queries_total / vllm:prefix_cache_hits_total (all label
// sets, e.g. one per engine), or, when a server has none, the names older vLLM releases use
// (vllm:gpu_prefix_cache_queries_total / _hits_total). `_created` samples are ignored. nullopt when
// the text has neither.
std::optional<PrefixCacheCounters> parse_prefix_cache_counters(std::string_view metrics_text);

// A --server-metrics URL: http://host:port[/path]; the path defaults to /metrics.
Result<Target> parse_server_metrics_url(std::string_view url);

// GETs `server`'s metrics and parses them. Errors: the client's (503 connect, 504 timeout, 502),
// a non-200 status (502), or no prefix-cache counters in the text (502).
asio::awaitable<Result<PrefixCacheCounters>> scrape_prefix_cache(asio::any_io_executor executor,
                                                                 const Target& server,
                                                                 std::chrono::milliseconds timeout);

// One server's part of a stage.
struct ServerPrefixCache {
  std::string url;
  double query_tokens = 0;  // delta over the stage
  double hit_tokens = 0;
  std::string error;  // non-empty: not counted (scrape failed before or after, or counter reset)
};

// The stage's figures over every server that could be scraped before and after.
struct PrefixCacheDelta {
  std::vector<ServerPrefixCache> servers;
  double query_tokens = 0;
  double hit_tokens = 0;
  double hit_rate = 0;      // hit_tokens / query_tokens; 0 when no queries
  std::size_t counted = 0;  // servers in the sums
};

// Combines the scrapes taken before and after a stage (same order as `servers`). A server whose
// counters went down (it restarted) is reported with an error and left out.
PrefixCacheDelta prefix_cache_delta(std::span<const Target> servers,
                                    std::span<const Result<PrefixCacheCounters>> before,
                                    std::span<const Result<PrefixCacheCounters>> after);

}  // namespace infergate::bench
