#include "datastore/collector.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <optional>
#include <set>
#include <utility>

#include "http/client.h"

namespace infergate::datastore {

namespace asio = boost::asio;
using SteadyTime = std::chrono::steady_clock::time_point;

struct MetricsCollector::Loop {
  Loop(asio::any_io_executor executor, EngineMetricsConfig config)
      : connection(executor), timer(executor), extractor(std::move(config)) {}

  http::ClientConnection connection;
  asio::steady_timer timer;
  Extractor extractor;
  std::string body_piece;                       // reused buffer for body reads
  std::shared_ptr<const EndpointMetrics> last;  // last published
  bool failing = false;                         // the last scrape failed (log on transitions)
  bool endpoint_gone = false;
};

namespace {

std::chrono::milliseconds remaining(SteadyTime deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

bool expired(SteadyTime deadline) { return std::chrono::steady_clock::now() >= deadline; }

// Sends the scrape request and reads the response head, connecting first when needed. A reused
// keep-alive connection the server closed meanwhile fails with 502 before any response: that
// case is retried once on a fresh connection.
asio::awaitable<Result<http::ResponseHead>> request_head(http::ClientConnection& connection,
                                                         const EndpointSpec& spec,
                                                         const std::string& path,
                                                         SteadyTime deadline) {
  for (int attempt = 0;; ++attempt) {
    const bool reused = connection.is_open();
    if (!reused) {
      std::string host = spec.address;
      Status connected =
          co_await connection.connect(std::move(host), spec.port, remaining(deadline));
      if (!connected.is_ok()) co_return connected;
    }
    http::Request request = http::make_request(boost::beast::http::verb::get, path);
    request.set(boost::beast::http::field::accept, "text/plain;version=0.0.4");
    Status sent = co_await connection.send_request(std::move(request), remaining(deadline));
    Result<http::ResponseHead> head(sent);
    if (sent.is_ok()) head = co_await connection.read_response_head(remaining(deadline));
    if (head.ok() || !reused || attempt > 0 || head.status().http_status() != 502 ||
        expired(deadline)) {
      co_return head;
    }
    connection.close();
  }
}

}  // namespace

std::shared_ptr<MetricsCollector> MetricsCollector::create(
    asio::io_context& io, Datastore& store, std::shared_ptr<const EndpointInfo> endpoint,
    EngineMetricsConfig config, const Clock& clock, CollectorOptions options) {
  return std::make_shared<MetricsCollector>(io, store, std::move(endpoint), std::move(config),
                                            clock, std::move(options));
}

MetricsCollector::MetricsCollector(asio::io_context& io, Datastore& store,
                                   std::shared_ptr<const EndpointInfo> endpoint,
                                   EngineMetricsConfig config, const Clock& clock,
                                   CollectorOptions options)
    : strand_(asio::make_strand(io)),
      store_(store),
      endpoint_(std::move(endpoint)),
      clock_(clock),
      options_(std::move(options)),
      loop_(std::make_unique<Loop>(strand_, std::move(config))) {}

MetricsCollector::~MetricsCollector() = default;

void MetricsCollector::start() {
  if (started_.exchange(true)) return;
  auto self = shared_from_this();
  asio::co_spawn(
      strand_,
      [self]() -> asio::awaitable<void> {
        Loop& loop = *self->loop_;
        const std::string& name = self->endpoint_->name;
        while (!self->stop_requested_.load(std::memory_order_acquire)) {
          const SteadyTime started = std::chrono::steady_clock::now();
          const SteadyTime deadline = started + self->options_.scrape_timeout;
          self->stats_.scrapes.fetch_add(1, std::memory_order_relaxed);
          Status status = co_await self->scrape(deadline);
          if (loop.endpoint_gone) break;
          if (!status.is_ok()) {
            self->stats_.scrape_errors.fetch_add(1, std::memory_order_relaxed);
            if (!loop.failing) {
              spdlog::warn("metrics collector {}: scrape of http://{}{} failed: {}", name,
                           self->endpoint_->host_port, self->options_.path, status.message());
            }
            loop.failing = true;
          } else if (loop.failing) {
            spdlog::info("metrics collector {}: scrapes succeed again", name);
            loop.failing = false;
          }
          if (self->stop_requested_.load(std::memory_order_acquire)) break;
          loop.timer.expires_at(started + self->options_.refresh_interval);
          co_await loop.timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        loop.connection.close();
      },
      [self](std::exception_ptr error) {
        // The loop handles its errors as values; this is a bug or an allocation failure.
        if (error) {
          try {
            std::rethrow_exception(error);
          } catch (const std::exception& e) {
            spdlog::error("metrics collector {}: ended by exception: {}", self->endpoint_->name,
                          e.what());
          } catch (...) {
            spdlog::error("metrics collector {}: ended by exception", self->endpoint_->name);
          }
        }
        self->finished_.store(true, std::memory_order_release);
      });
}

void MetricsCollector::stop() {
  if (stop_requested_.exchange(true, std::memory_order_acq_rel)) return;
  // The timer belongs to the strand; cancel it there so a waiting loop wakes up at once.
  asio::post(strand_, [self = shared_from_this()] { self->loop_->timer.cancel(); });
}

asio::awaitable<Status> MetricsCollector::scrape(SteadyTime deadline) {
  Loop& loop = *loop_;
  // What the director had in flight to the endpoint as the scrape began: the figures scraped
  // below may include those requests, not ones dispatched later (stale-metrics correction).
  const std::optional<InflightCounts> inflight_at_start = store_.inflight(*endpoint_);
  auto head = co_await request_head(loop.connection, endpoint_->spec, options_.path, deadline);
  if (!head.ok()) co_return head.status();
  if (head->status != 200) {
    // The body is of no use; dropping the connection is simpler than draining it.
    loop.connection.close();
    co_return Status(502, "status " + std::to_string(head->status));
  }
  while (true) {
    if (expired(deadline)) {
      loop.connection.close();
      loop.extractor.reset();
      co_return Status(504, "scrape took longer than " +
                                std::to_string(options_.scrape_timeout.count()) + " ms");
    }
    loop.body_piece.clear();
    auto read = co_await loop.connection.read_body_some(loop.body_piece, remaining(deadline));
    if (!read.ok()) {
      loop.extractor.reset();
      co_return read.status();
    }
    if (*read == 0) break;
    loop.extractor.feed(loop.body_piece);
  }

  static const EndpointMetrics kNoMetrics;
  auto extraction = loop.extractor.finish(loop.last ? *loop.last : kNoMetrics);
  if (!extraction.ok()) co_return extraction.status();

  const MetricSet missing = extraction->missing;
  const MetricSet previous_missing = stats_.missing.exchange(missing, std::memory_order_relaxed);
  if (missing != previous_missing) {
    if (missing != 0) {
      spdlog::warn("metrics collector {}: metrics missing from the scrape: {}", endpoint_->name,
                   describe_metrics(missing, loop.extractor.config()));
    } else {
      spdlog::info("metrics collector {}: all metrics present again", endpoint_->name);
    }
  }

  auto metrics = std::make_shared<EndpointMetrics>(std::move(extraction->metrics));
  metrics->updated_at = clock_.now();
  if (!store_.update_metrics(*endpoint_, metrics, inflight_at_start)) {
    loop.endpoint_gone = true;
    co_return Status::ok();
  }
  stats_.published.fetch_add(1, std::memory_order_relaxed);
  loop.last = std::move(metrics);
  co_return Status::ok();
}

// ---- CollectorSet ----

CollectorSet::CollectorSet(asio::io_context& io, Datastore& store, EngineMappings mappings,
                           const Clock& clock, CollectorOptions options)
    : io_(io),
      store_(store),
      mappings_(std::move(mappings)),
      clock_(clock),
      options_(std::move(options)) {}

CollectorSet::~CollectorSet() { stop_all(); }

void CollectorSet::sync() {
  std::lock_guard lock(mutex_);
  // Read under the lock so concurrent syncs apply snapshots in publication order.
  const auto snapshot = store_.snapshot();
  std::set<const EndpointInfo*> live;
  for (const auto& endpoint : snapshot->endpoints) {
    const EndpointInfo* info = endpoint.info.get();
    live.insert(info);
    if (collectors_.count(info) != 0) continue;
    const EngineMetricsConfig* config = mappings_.find(info->engine_type);
    if (config == nullptr) {
      spdlog::warn("endpoint {}: unknown engine type \"{}\", reading its metrics as {}", info->name,
                   info->engine_type, kDefaultEngineType);
      config = &mappings_.find_or_default(info->engine_type);
    }
    auto collector =
        MetricsCollector::create(io_, store_, endpoint.info, *config, clock_, options_);
    collector->start();
    collectors_.emplace(info, std::move(collector));
  }
  for (auto it = collectors_.begin(); it != collectors_.end();) {
    if (live.count(it->first) == 0 || it->second->finished()) {
      it->second->stop();
      it = collectors_.erase(it);
    } else {
      ++it;
    }
  }
}

void CollectorSet::stop_all() {
  std::lock_guard lock(mutex_);
  for (auto& [info, collector] : collectors_) collector->stop();
  collectors_.clear();
}

std::size_t CollectorSet::size() const {
  std::lock_guard lock(mutex_);
  return collectors_.size();
}

std::shared_ptr<MetricsCollector> CollectorSet::find(std::string_view name) const {
  std::lock_guard lock(mutex_);
  for (const auto& [info, collector] : collectors_) {
    if (info->name == name) return collector;
  }
  return nullptr;
}

std::uint64_t CollectorSet::scrape_errors() const {
  std::lock_guard lock(mutex_);
  std::uint64_t total = 0;
  for (const auto& [info, collector] : collectors_) {
    total += collector->stats().scrape_errors.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace infergate::datastore
