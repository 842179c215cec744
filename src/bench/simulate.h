#pragma once

// `infergate simulate`'s driver: a Workload's requests, arriving as a Poisson process in virtual
// time, run through the virtual-time cluster simulation (sim/cluster.h) once per configuration,
// and each run summarised in the report `infergate bench` produces (report.h), with the
// simulation's own figures (engine prefix-cache counters, the ORACLE bound, Little's law).
//
// Pure and single-threaded: no clock, no I/O; the same options give the same report.

#include <chrono>
#include <cstdint>
#include <string>

#include "bench/report.h"
#include "bench/workload.h"
#include "common/status.h"
#include "sim/cluster.h"

namespace infergate::bench {

struct SimulateOptions {
  double rate = 10;  // mean arrivals per second (Poisson), virtual time
  // Requests arriving in [0, warmup) run but are not measured; the measured window is
  // [warmup, warmup + duration). The run continues until every request has finished.
  Duration warmup{};
  Duration duration = std::chrono::seconds(60);
  std::uint64_t seed = 1;     // arrival times (the workload and the cluster have their own)
  std::string model_profile;  // echoed in the report
};

// 400 naming the flag: rate > 0 and finite, duration > 0, warmup >= 0.
Status validate(const SimulateOptions& options);

// The request schedule, for the report's config echo (mode rate, no target URL).
BenchConfig simulate_bench_config(const Workload& workload, const SimulateOptions& options);

// Runs `workload` through one cluster configuration and reports it. Arrivals are Poisson at
// `options.rate`, or the workload's own times when it has them (a trace; `rate` is then unused),
// up to warmup + duration. Errors: the cluster's
// start-up errors (400). `workload` must be valid for the whole call.
Result<Report> simulate(const Workload& workload, const SimulateOptions& options,
                        const sim::ClusterConfig& cluster);

// The report of a finished cluster run whose requests arrived on `options`' schedule.
Report make_simulation_report(sim::ClusterResult result, const SimulateOptions& options,
                              const sim::ClusterConfig& cluster);

}  // namespace infergate::bench
