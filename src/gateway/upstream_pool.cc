#include "gateway/upstream_pool.h"

#include <algorithm>
#include <stdexcept>

#include "common/clock.h"

namespace infergate::gateway {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;

thread_local std::size_t this_thread_shard = 0;

}  // namespace

std::size_t current_shard() { return this_thread_shard; }
void set_current_shard(std::size_t shard) { this_thread_shard = shard; }

std::optional<UpstreamEndpoint> parse_upstream_endpoint(std::string_view host_port) {
  UpstreamEndpoint endpoint;
  endpoint.host_port = std::string(host_port);
  std::string_view port_text;
  if (!host_port.empty() && host_port.front() == '[') {
    const auto close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return std::nullopt;
    }
    endpoint.host = std::string(host_port.substr(1, close - 1));
    port_text = host_port.substr(close + 2);
  } else {
    const auto colon = host_port.rfind(':');
    if (colon == std::string_view::npos || host_port.find(':') != colon) return std::nullopt;
    endpoint.host = std::string(host_port.substr(0, colon));
    port_text = host_port.substr(colon + 1);
  }
  if (endpoint.host.empty() || port_text.empty() || port_text.size() > 5) return std::nullopt;
  unsigned port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535) return std::nullopt;
  endpoint.port = static_cast<std::uint16_t>(port);
  return endpoint;
}

UpstreamPool::UpstreamPool(std::vector<boost::asio::any_io_executor> shard_executors,
                           UpstreamPoolOptions options)
    : options_(options), shards_(std::max<std::size_t>(1, shard_executors.size())) {
  if (shard_executors.empty()) {
    throw std::invalid_argument("UpstreamPool needs at least one shard executor");
  }
  for (std::size_t shard = 0; shard < shards_.size(); ++shard) {
    shards_[shard].executor = std::move(shard_executors[shard]);
  }
}

UpstreamPool::UpstreamPool(boost::asio::any_io_executor executor, std::size_t shard_count,
                           UpstreamPoolOptions options)
    : UpstreamPool(std::vector<boost::asio::any_io_executor>(std::max<std::size_t>(1, shard_count),
                                                             executor),
                   options) {}

UpstreamPool::~UpstreamPool() { shutdown(); }

std::unique_ptr<http::ClientConnection> UpstreamPool::take_idle(std::size_t shard,
                                                                const std::string& host_port) {
  auto& idle_map = shards_[shard].idle;
  auto it = idle_map.find(host_port);
  if (it == idle_map.end()) return nullptr;
  std::vector<Idle>& idle = it->second;
  const SteadyTime now = coarse_steady_now();  // idle ages are seconds
  // The oldest are at the front: drop those past their age first.
  const auto young = std::find_if(idle.begin(), idle.end(), [&](const Idle& entry) {
    return now - entry.since < options_.max_idle_age;
  });
  if (young != idle.begin()) {
    stats_.discarded.fetch_add(static_cast<std::uint64_t>(young - idle.begin()),
                               std::memory_order_relaxed);
    idle.erase(idle.begin(), young);
  }
  while (!idle.empty()) {
    std::unique_ptr<http::ClientConnection> connection = std::move(idle.back().connection);
    idle.pop_back();
    if (connection->is_open()) return connection;
    stats_.discarded.fetch_add(1, std::memory_order_relaxed);
  }
  return nullptr;
}

void UpstreamPool::release(std::size_t shard, const std::string& host_port,
                           std::unique_ptr<http::ClientConnection> connection) {
  if (!connection || !connection->is_open() || shut_down_.load(std::memory_order_acquire)) {
    return;  // closed by its destructor
  }
  std::vector<Idle>& idle = shards_[shard % shards_.size()].idle[host_port];
  if (idle.size() >= options_.max_idle_per_endpoint) {
    stats_.discarded.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  idle.push_back({std::move(connection), coarse_steady_now()});
}

void UpstreamPool::shutdown() {
  shut_down_.store(true, std::memory_order_release);
  for (Shard& shard : shards_) {
    for (auto& [host_port, idle] : shard.idle) {
      stats_.discarded.fetch_add(idle.size(), std::memory_order_relaxed);
    }
    shard.idle.clear();
  }
}

std::size_t UpstreamPool::idle(std::size_t shard) const {
  std::size_t count = 0;
  for (const auto& [host_port, idle] : shards_[shard % shards_.size()].idle) count += idle.size();
  return count;
}

boost::asio::awaitable<std::variant<UpstreamExchange, ExchangeFailure>>
UpstreamPool::start_exchange(std::size_t shard, const UpstreamEndpoint& endpoint,
                             const http::Request& request, ExchangeTimeouts timeouts,
                             UpstreamCancel& cancel) {
  shard %= shards_.size();
  // Two tries at most: the second only after a pooled connection turned out closed.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<http::ClientConnection> connection;
    if (attempt == 0 && !shut_down_.load(std::memory_order_acquire)) {
      connection = take_idle(shard, endpoint.host_port);
    }
    const bool reused = connection != nullptr;
    if (!reused) {
      connection = std::make_unique<http::ClientConnection>(shards_[shard].executor);
      cancel.set_active(connection.get());
      Status connected =
          co_await connection->connect(endpoint.host, endpoint.port, timeouts.connect);
      cancel.set_active(nullptr);
      if (!connected.is_ok()) {
        const AttemptFailure kind = connected.http_status() == 504
                                        ? AttemptFailure::kConnectTimeout
                                        : AttemptFailure::kConnectRefused;
        co_return ExchangeFailure{kind, std::move(connected)};
      }
      stats_.opened.fetch_add(1, std::memory_order_relaxed);
    } else {
      stats_.reused.fetch_add(1, std::memory_order_relaxed);
    }
    if (cancel.cancelled()) {
      co_return ExchangeFailure{AttemptFailure::kReset, Status(499, "client closed the request")};
    }

    cancel.set_active(connection.get());
    Result<http::ResponseHead> head =
        co_await connection->exchange_head(request, timeouts.first_byte);
    cancel.set_active(nullptr);
    if (head.ok()) {
      co_return UpstreamExchange{std::move(*head), std::move(connection), reused};
    }
    Status failure = head.status();
    if (cancel.cancelled()) {
      co_return ExchangeFailure{AttemptFailure::kReset, Status(499, "client closed the request")};
    }
    if (failure.http_status() == 504) {
      co_return ExchangeFailure{AttemptFailure::kFirstByteTimeout, std::move(failure)};
    }
    if (reused && attempt == 0) {
      stats_.stale_retries.fetch_add(1, std::memory_order_relaxed);
      continue;  // the server had closed the idle connection: nothing was processed
    }
    co_return ExchangeFailure{AttemptFailure::kReset, std::move(failure)};
  }
  co_return ExchangeFailure{AttemptFailure::kReset, Status(502, "unreachable")};
}

}  // namespace infergate::gateway
