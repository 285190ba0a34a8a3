#pragma once
// Where a trial's checkpoints live. The coordinator names a base path per trial
// (DIR/EXPERIMENT/trial-N.ckpt); rank 0 writes BASE.epoch-E after every epoch E, keeping the
// last two, and BASE.epoch-E.partial when preempted inside epoch E + 1. Under PBT it also keeps
// BASE.pbt-E, the state a trial paused in after epoch E, for other trials to exploit.
//
// The files are the workers' alone: the coordinator names them but never opens, checks or
// links one, because on a cluster DIR is usually a scratch filesystem of the compute nodes that
// the login node does not mount. What the coordinator knows of them, it knows from the
// workers' reports (Report::checkpointed).

#include <string>

namespace trellis {

inline std::string checkpoint_file(const std::string& base, int epoch, bool partial = false) {
  return base + ".epoch-" + std::to_string(epoch) + (partial ? ".partial" : "");
}

inline std::string exploit_snapshot(const std::string& base, int epoch) {
  return base + ".pbt-" + std::to_string(epoch);
}

}  // namespace trellis
