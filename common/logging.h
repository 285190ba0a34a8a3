#pragma once
// Logging to stderr (stdout stays clean for tables and exports), one format for every binary.

#include <string>

#include "common/status.h"

namespace trellis {

// `level`: trace, debug, info, warn, error, critical, off. `tag` prefixes every line, e.g.
// "worker r0" so lines of several ranks can be told apart.
[[nodiscard]] Status init_logging(const std::string& tag, const std::string& level);

}  // namespace trellis
