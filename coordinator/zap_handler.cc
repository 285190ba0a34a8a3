// being written (security)
#include "coordinator/zap_handler.h"

namespace trellis::coordinator {

Status ZapHandler::Start(zmq::context_t&, std::vector<std::string>, std::unique_ptr<ZapHandler>* out) {
  out->reset(new ZapHandler());
  return Status::Ok();
}

ZapHandler::~ZapHandler() = default;

}  // namespace trellis::coordinator
