#include "coordinator/trial_state.h"

namespace trellis::coordinator {

const char* to_string(TrialState state) {
  switch (state) {
    case TrialState::kPending: return "pending";
    case TrialState::kRunning: return "running";
    case TrialState::kPaused: return "paused";
    case TrialState::kCompleted: return "completed";
    case TrialState::kPruned: return "pruned";
    case TrialState::kFailed: return "failed";
  }
  return "unknown";
}

bool parse_trial_state(const std::string& text, TrialState* out) {
  static constexpr TrialState kAll[] = {TrialState::kPending, TrialState::kRunning,
                                        TrialState::kPaused,
                                        TrialState::kCompleted, TrialState::kPruned,
                                        TrialState::kFailed};
  for (TrialState state : kAll) {
    if (text == to_string(state)) {
      *out = state;
      return true;
    }
  }
  return false;
}

}  // namespace trellis::coordinator
