#pragma once

// Start-up helpers of `infergate serve`: the static pool from --endpoints and the
// EndpointPickerConfig from --config-file / --config-text. Pure apart from reading the file;
// errors are 400 Statuses naming the flag and the entry or file at fault.
//
// They follow `infergate epp`'s rules (extproc/epp.cc) so that both commands read the same
// flags the same way: entries `host:port` (IPv6 bracketed), endpoints named `<pool>-<index>`
// (rank 0), duplicates rejected; a config text or file holding exactly one EndpointPickerConfig.

#include <string>
#include <string_view>
#include <vector>

#include "api/types.h"
#include "common/status.h"
#include "datastore/endpoint.h"

namespace infergate::gateway {

// `entries` as given on the command line (each may itself be a comma-separated list).
Result<std::vector<datastore::EndpointSpec>> parse_endpoint_list(
    const std::vector<std::string>& entries, std::string_view pool_name,
    std::string_view namespace_name = "default");

// The configuration from `file` or `text` (at most one may be non-empty); GIE's default
// configuration when both are empty. `source` is set to what was used, for messages.
Result<api::EndpointPickerConfig> load_picker_config(const std::string& file,
                                                     const std::string& text, std::string& source);

}  // namespace infergate::gateway
