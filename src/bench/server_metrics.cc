#include "bench/server_metrics.h"

#include <fmt/format.h>

#include <boost/beast/http/verb.hpp>

#include "http/client.h"
#include "prom/parser.h"

namespace infergate::bench {

std::optional<PrefixCacheCounters> parse_prefix_cache_counters(std::string_view metrics_text) {
  // [0]: current names, [1]: older vLLM's. Each counter family appears as `<name>_total`
  // (counters in the text format), or bare when the server declares no TYPE.
  struct Sums {
    PrefixCacheCounters counters;
    bool found = false;
  } sums[2];
  auto add = [&](std::string_view name, double value) {
    static constexpr std::string_view kQueries[2] = {"vllm:prefix_cache_queries",
                                                     "vllm:gpu_prefix_cache_queries"};
    static constexpr std::string_view kHits[2] = {"vllm:prefix_cache_hits",
                                                  "vllm:gpu_prefix_cache_hits"};
    if (name.ends_with("_total")) name.remove_suffix(6);
    for (int generation = 0; generation < 2; ++generation) {
      if (name == kQueries[generation]) {
        sums[generation].counters.queries += value;
        sums[generation].found = true;
      } else if (name == kHits[generation]) {
        sums[generation].counters.hits += value;
        sums[generation].found = true;
      }
    }
  };
  prom::TextParser parser;
  auto on_sample = [&](const prom::Sample& sample) {
    if (sample.name.ends_with("_created")) return;
    add(sample.name, sample.value);
  };
  parser.feed(metrics_text, on_sample);
  parser.finish(on_sample);
  for (const Sums& generation : sums) {
    if (generation.found) return generation.counters;
  }
  return std::nullopt;
}

Result<Target> parse_server_metrics_url(std::string_view url) {
  auto target = parse_target_url(url);
  if (!target) {
    // parse_target_url names --url; say which flag this is.
    return Status::bad_request(fmt::format("--server-metrics: {}", target.status().message()));
  }
  if (target->base_path.empty()) target->base_path = "/metrics";
  return target;
}

asio::awaitable<Result<PrefixCacheCounters>> scrape_prefix_cache(
    asio::any_io_executor executor, const Target& server, std::chrono::milliseconds timeout) {
  http::Request request = http::make_request(
      boost::beast::http::verb::get, server.base_path.empty() ? "/metrics" : server.base_path);
  request.set(boost::beast::http::field::user_agent, "infergate-bench");
  Result<http::ClientResponse> response =
      co_await http::fetch(executor, server.host, server.port, std::move(request), timeout);
  if (!response.ok()) co_return response.status();
  if (response->status != 200) {
    co_return Status(502, fmt::format("GET {}: HTTP {}", server.url(), response->status));
  }
  std::optional<PrefixCacheCounters> counters = parse_prefix_cache_counters(response->body);
  if (!counters) {
    co_return Status(
        502, fmt::format("GET {}: no vllm:prefix_cache_queries / hits counters", server.url()));
  }
  co_return *counters;
}

PrefixCacheDelta prefix_cache_delta(std::span<const Target> servers,
                                    std::span<const Result<PrefixCacheCounters>> before,
                                    std::span<const Result<PrefixCacheCounters>> after) {
  PrefixCacheDelta delta;
  for (std::size_t index = 0; index < servers.size(); ++index) {
    ServerPrefixCache& server = delta.servers.emplace_back();
    server.url = servers[index].url();
    if (index >= before.size() || index >= after.size()) {
      server.error = "not scraped";
      continue;
    }
    if (!before[index].ok()) {
      server.error = "before: " + before[index].status().message();
      continue;
    }
    if (!after[index].ok()) {
      server.error = "after: " + after[index].status().message();
      continue;
    }
    server.query_tokens = after[index]->queries - before[index]->queries;
    server.hit_tokens = after[index]->hits - before[index]->hits;
    if (server.query_tokens < 0 || server.hit_tokens < 0) {
      server.error = "counters went down (server restarted?)";
      server.query_tokens = server.hit_tokens = 0;
      continue;
    }
    delta.query_tokens += server.query_tokens;
    delta.hit_tokens += server.hit_tokens;
    ++delta.counted;
  }
  delta.hit_rate = delta.query_tokens > 0 ? delta.hit_tokens / delta.query_tokens : 0;
  return delta;
}

}  // namespace infergate::bench
