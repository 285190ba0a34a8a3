#pragma once
// MetricFold: a trial's latest value of each metric, folded from its reports in any order: a
// value of a later epoch wins, and within one epoch the later attempt's (a resumed attempt
// repeats the epochs after its checkpoint). It is what a listing shows next to each trial, and
// what the store keeps with a trial once it ends.

#include <cstdint>
#include <string>
#include <vector>

#include "common/param_value.h"

namespace trellis::coordinator {

class MetricFold {
 public:
  void add(std::int32_t epoch, std::int32_t attempt, const MetricMap& metrics) {
    if (epoch > epochs_run_) epochs_run_ = epoch;
    for (const auto& [name, value] : metrics) {
      Entry* found = nullptr;
      for (Entry& e : entries_) {  // a handful of names: a scan beats a map
        if (e.name == name) {
          found = &e;
          break;
        }
      }
      if (found == nullptr) {
        entries_.push_back({name, epoch, attempt, value});
      } else if (epoch > found->epoch || (epoch == found->epoch && attempt >= found->attempt)) {
        found->epoch = epoch;
        found->attempt = attempt;
        found->value = value;
      }
    }
  }

  MetricMap last() const {
    MetricMap out;
    for (const Entry& e : entries_) out.emplace(e.name, e.value);
    return out;
  }
  // The highest epoch reported (by any report, even one without metrics).
  std::int32_t epochs_run() const { return epochs_run_; }

 private:
  struct Entry {
    std::string name;
    std::int32_t epoch;
    std::int32_t attempt;
    double value;
  };
  std::vector<Entry> entries_;
  std::int32_t epochs_run_ = 0;
};

}  // namespace trellis::coordinator
