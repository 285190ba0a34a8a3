#include "worker/topology.h"

#include <hwloc.h>

#include <cstdlib>

namespace trellis::worker {

std::string topology_summary() {
  hwloc_topology_t topology;
  if (hwloc_topology_init(&topology) != 0) return "unknown topology";
  if (hwloc_topology_load(topology) != 0) {
    hwloc_topology_destroy(topology);
    return "unknown topology";
  }
  auto count = [&](hwloc_obj_type_t type) { return hwloc_get_nbobjs_by_type(topology, type); };
  std::string out = std::to_string(count(HWLOC_OBJ_PACKAGE)) + " package(s), " +
                    std::to_string(count(HWLOC_OBJ_NUMANODE)) + " NUMA node(s), " +
                    std::to_string(count(HWLOC_OBJ_CORE)) + " core(s), " +
                    std::to_string(count(HWLOC_OBJ_PU)) + " PU(s)";
  hwloc_bitmap_t set = hwloc_bitmap_alloc();
  if (hwloc_get_cpubind(topology, set, HWLOC_CPUBIND_PROCESS) == 0) {
    char* text = nullptr;
    hwloc_bitmap_list_asprintf(&text, set);
    if (text != nullptr) {
      out += "; rank 0 bound to PUs " + std::string(text);
      std::free(text);
    }
  }
  hwloc_bitmap_free(set);
  hwloc_topology_destroy(topology);
  return out;
}

}  // namespace trellis::worker
