#pragma once
// Where a trial's checkpoints live. The coordinator names a base path per trial
// (DIR/EXPERIMENT/trial-N.ckpt); rank 0 writes BASE.epoch-E after every epoch E, keeping the
// last two, and BASE.epoch-E.partial when preempted inside epoch E + 1. Both sides derive file
// names here: the worker to write and resume, the coordinator to check a checkpoint exists
// before it promotes a paused trial, and to snapshot one for PBT.

#include <string>

namespace trellis {

inline std::string checkpoint_file(const std::string& base, int epoch, bool partial = false) {
  return base + ".epoch-" + std::to_string(epoch) + (partial ? ".partial" : "");
}

}  // namespace trellis
