#pragma once

// Factories of the built-in plugins, one per file in this folder; registered by type name in
// plugin_registry.cc. Formulas and defaults: scheduling facts §3.

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "scheduling/framework.h"

namespace infergate::scheduling::plugins {

Result<std::shared_ptr<Plugin>> make_queue_scorer(std::string name, const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_running_requests_size_scorer(std::string name,
                                                                  const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_kv_cache_utilization_scorer(std::string name,
                                                                 const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_lora_affinity_scorer(std::string name,
                                                          const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_token_load_scorer(std::string name,
                                                       const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_session_affinity_scorer(std::string name,
                                                             const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_header_based_testing_filter(std::string name,
                                                                 const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_weighted_random_picker(std::string name,
                                                            const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_prefix_cache_scorer(std::string name,
                                                         const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_utilization_detector(std::string name,
                                                          const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_concurrency_detector(std::string name,
                                                          const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_max_score_picker(std::string name,
                                                      const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_random_picker(std::string name, const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_round_robin_picker(std::string name,
                                                        const nlohmann::json& params);
Result<std::shared_ptr<Plugin>> make_single_profile_handler(std::string name,
                                                            const nlohmann::json& params);

// Min-max normalisation shared by the queue and running-requests scorers:
// (max - v) / (max - min), 1.0 for everyone when all values are equal. `values` and `scores` may
// be the same buffer.
void score_lower_is_better(std::span<const double> values, std::span<double> scores);

// 0..count-1 in a random order drawn from `seed` (Fisher-Yates), for the pickers.
void shuffled_indices(std::size_t count, std::uint64_t seed, std::vector<std::size_t>& out);

}  // namespace infergate::scheduling::plugins
