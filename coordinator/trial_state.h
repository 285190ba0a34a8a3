#pragma once
// The states of a trial, shared by the trial state machine (trial_book.h) and the store
// (whose library, trellis_store, builds trial_state.cc).

#include <string>

namespace trellis::coordinator {

// paused: the trial reached the epoch its scheduler gave it and waits, with its checkpoint,
// to be continued (ASHA promotion, PBT) or ended at the end of the sweep.
enum class TrialState { kPending, kRunning, kPaused, kCompleted, kPruned, kFailed };

const char* to_string(TrialState state);  // "pending", "running", ...
bool parse_trial_state(const std::string& text, TrialState* out);

}  // namespace trellis::coordinator
