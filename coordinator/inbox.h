#pragma once
// Inbox: the frames the coordinator has received and not yet handled, and the order it
// handles them in. Frames stay encoded until their turn (decoding a thousand queued Reports to
// find the one Done among them would delay that Done); the caller says which are Reports
// (is_report_frame).
//
// Under load, a group waiting for an Assign (after Hello, Request or Done) is a machine doing
// nothing, while a Report waiting for its Ack delays nobody: the agent keeps training and keeps
// the report until acknowledged. So whatever is not a Report goes first, and the groups with
// Reports take turns, as far as the caller's budget goes; a group's turn takes all its queued
// Reports, so their Acks leave together (one write to its connection, not one each). Each
// group's own messages are still handled in the order it sent them: a message behind that
// group's queued Reports waits for them (a Done never overtakes the reports of its trial).

#include <cstddef>
#include <deque>
#include <string>
#include <unordered_map>

#include <zmq.hpp>

namespace trellis::coordinator {

class Inbox {
 public:
  struct Item {
    std::string identity;  // the ZeroMQ identity of the sending group
    zmq::message_t frame;
  };

  void push(std::string identity, zmq::message_t frame, bool report);

  // The next message to handle: a non-Report first, else a Report if `report_allowed`. False
  // when there is none (Reports may remain).
  bool pop(bool report_allowed, Item* out);

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }      // frames
  std::size_t bytes() const { return bytes_; }    // of their payloads
  // A non-Report is at the head of some group's queue.
  bool has_urgent() const { return !urgent_.empty(); }

 private:
  struct Queued {
    zmq::message_t frame;
    bool report;
  };
  // Puts a group whose queue is not empty in line, by the kind of its head frame; at the front
  // of the Reports line when its turn goes on.
  void line_up(const std::string& identity, const std::deque<Queued>& queue, bool turn_goes_on);

  std::unordered_map<std::string, std::deque<Queued>> queues_;  // only non-empty ones
  std::deque<std::string> urgent_;   // groups whose head message is not a Report
  std::deque<std::string> reports_;  // groups whose head message is a Report, in turn order
  std::size_t size_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace trellis::coordinator
