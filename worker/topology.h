#pragma once
// A one-line summary of the machine and of where this process is bound (hwloc), sent in the
// worker's Hello so the coordinator can tell what ran where.

#include <string>

namespace trellis::worker {

std::string topology_summary();

}  // namespace trellis::worker
