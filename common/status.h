#pragma once
// Status: the result of an operation that can fail at a boundary (file, wire, store, spec).
// Errors carry one human-readable message that names what is wrong and where; callers add
// context with `Status::Error(where + ": " + s.message())` rather than throwing through layers.

#include <string>
#include <utility>

namespace trellis {

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return !failed_; }
  const std::string& message() const { return message_; }

  // Prefixes the message with where the failure happened; a no-op on success.
  Status With(const std::string& where) const {
    return ok() ? *this : Status(where + ": " + message_);
  }

 private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  std::string message_;
};

}  // namespace trellis
