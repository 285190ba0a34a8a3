#pragma once
// Reading the flat JSON objects the store writes (params_codec.h, metrics_json.h: names to
// numbers, strings or null, nothing nested) without building values, so the dashboard can
// pass each value's text on as it is. 100,000 trials' parameters and metrics are scanned in a
// few tens of milliseconds; parsing them into maps costs a second.

#include <string_view>
#include <utility>
#include <vector>

namespace trellis::dashboard {

// Each member as (name, value text): the name without its quotes (escapes left as written),
// the value exactly as written ("0.1", "\"relu\"", "null"). False, with `out` unspecified,
// when `text` is not a flat object.
[[nodiscard]] bool scan_flat_object(std::string_view text,
                                    std::vector<std::pair<std::string_view, std::string_view>>* out);

}  // namespace trellis::dashboard
