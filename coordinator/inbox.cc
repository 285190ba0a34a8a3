#include "coordinator/inbox.h"

#include <utility>

namespace trellis::coordinator {

void Inbox::push(std::string identity, zmq::message_t frame, bool report) {
  auto [it, inserted] = queues_.try_emplace(std::move(identity));
  bytes_ += frame.size();
  it->second.push_back({std::move(frame), report});
  ++size_;
  if (it->second.size() == 1) line_up(it->first, it->second, false);
}

bool Inbox::pop(bool report_allowed, Item* out) {
  std::deque<std::string>* line = !urgent_.empty() ? &urgent_
                                  : report_allowed && !reports_.empty() ? &reports_
                                                                        : nullptr;
  if (line == nullptr) return false;
  out->identity = std::move(line->front());
  line->pop_front();
  auto it = queues_.find(out->identity);
  out->frame = std::move(it->second.front().frame);
  it->second.pop_front();
  --size_;
  bytes_ -= out->frame.size();
  if (it->second.empty()) {
    queues_.erase(it);
  } else {
    line_up(it->first, it->second, line == &reports_);
  }
  return true;
}

void Inbox::line_up(const std::string& identity, const std::deque<Queued>& queue,
                    bool turn_goes_on) {
  if (!queue.front().report) {
    urgent_.push_back(identity);
  } else if (turn_goes_on) {
    reports_.push_front(identity);
  } else {
    reports_.push_back(identity);
  }
}

}  // namespace trellis::coordinator
