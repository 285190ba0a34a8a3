#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace trellis {

Status init_logging(const std::string& tag, const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off")
    return Status::Error("unknown log level '" + level +
                         "' (trace, debug, info, warn, error, critical, off)");
  auto logger = spdlog::stderr_color_mt(tag);
  logger->set_pattern("[%H:%M:%S.%e] [" + tag + "] [%^%l%$] %v");
  logger->set_level(parsed);
  spdlog::set_default_logger(logger);
  return Status::Ok();
}

}  // namespace trellis
