#include "cli/workload_flags.h"

#include <fmt/format.h>

namespace infergate::cli {

void add_workload_flags(CLI::App& command, std::string& kind, bench::WorkloadOptions& options) {
  command
      .add_option("--workload", kind,
                  "random, shared-prefix, sharegpt (ShareGPT-like prompt/output lengths), "
                  "multi-turn (chat sessions) or trace (replay of --trace)")
      ->capture_default_str();
  command.add_option("--prompt-tokens", options.prompt_tokens, "random: prompt length in tokens")
      ->capture_default_str();
  command
      .add_option("--output-tokens", options.output_tokens,
                  "Output tokens per request (max_tokens, with ignore_eos); multi-turn: also "
                  "the length of each earlier assistant reply; sharegpt and trace set their own")
      ->capture_default_str();
  command
      .add_option("--num-groups", options.num_groups,
                  "shared-prefix: groups, each with its own system prompt")
      ->capture_default_str();
  command
      .add_option("--prompts-per-group", options.prompts_per_group,
                  "shared-prefix: distinct questions per group")
      ->capture_default_str();
  command
      .add_option("--system-prompt-tokens", options.system_prompt_tokens,
                  "shared-prefix, multi-turn: system prompt length in tokens")
      ->capture_default_str();
  command
      .add_option("--question-tokens", options.question_tokens,
                  "shared-prefix: question length in tokens")
      ->capture_default_str();
  command
      .add_option("--sessions", options.num_sessions,
                  "multi-turn: chat sessions in flight; request i is a turn of session i mod "
                  "--sessions, so a session's turns are --sessions requests apart")
      ->capture_default_str();
  command.add_option("--turns", options.turns_per_session, "multi-turn: turns per session")
      ->capture_default_str();
  command
      .add_option("--user-tokens", options.user_turn_tokens,
                  "multi-turn: tokens of each user message")
      ->capture_default_str();
  command.add_option(
      "--trace", options.trace_path,
      "trace: JSONL file, one request per line: {\"timestamp\": seconds from the start, "
      "\"prompt\": text or \"prompt_tokens\": n, \"output_tokens\": n, \"session_id\": "
      "optional}; arrivals follow the timestamps up to --warmup + --duration (bench: "
      "unless --concurrency is given) (default: none)");
}

CLI::Option* add_sweep_flags(CLI::App& command, SweepFlags& flags, std::string_view probed) {
  CLI::Option* sweep = command.add_flag(
      "--sweep", flags.enabled,
      fmt::format("Find the saturation rate first (probes at --sweep-start-rate x 2, x 4, ... "
                  "until the achieved rate stops rising, falls short of the offered rate, e2e "
                  "p90 explodes, requests fail or the generator falls behind; against {}), then "
                  "run at --sweep-fractions of it, each stage for --stage-duration (instead of "
                  "--rate)",
                  probed));
  command
      .add_option("--sweep-start-rate", flags.start_rate,
                  "--sweep: the first probe's rate in req/s")
      ->capture_default_str();
  command
      .add_option("--sweep-probe-duration", flags.probe_duration_s,
                  "--sweep: measured seconds of each probe (no warm-up)")
      ->capture_default_str();
  command.add_option("--sweep-max-probes", flags.max_probes, "--sweep: probes at most")
      ->capture_default_str();
  command
      .add_option("--sweep-fractions", flags.percents,
                  "--sweep: the ladder, in percent of the saturation rate")
      ->delimiter(',')
      ->capture_default_str();
  return sweep;
}

Result<bench::SweepOptions> sweep_options(const SweepFlags& flags) {
  return bench::make_sweep_options(flags.start_rate, flags.probe_duration_s, flags.max_probes,
                                   flags.percents);
}

}  // namespace infergate::cli
