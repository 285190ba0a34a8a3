#include "worker/topology.h"

#include <hwloc.h>
#include <unistd.h>

#include <Eigen/Core>

#include <charconv>
#include <cstdlib>
#include <vector>

#include "worker/kernels/gemm.h"

namespace trellis::worker {

namespace {

// hwloc topology owned for the scope of one call.
class Topology {
 public:
  Topology() {
    if (hwloc_topology_init(&topology_) != 0) return;
    if (hwloc_topology_load(topology_) != 0) {
      hwloc_topology_destroy(topology_);
      return;
    }
    loaded_ = true;
  }
  ~Topology() {
    if (loaded_) hwloc_topology_destroy(topology_);
  }
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  bool loaded() const { return loaded_; }
  hwloc_topology_t get() const { return topology_; }
  int count(hwloc_obj_type_t type) const { return hwloc_get_nbobjs_by_type(topology_, type); }

 private:
  hwloc_topology_t topology_ = nullptr;
  bool loaded_ = false;
};

class Bitmap {
 public:
  Bitmap() : set_(hwloc_bitmap_alloc()) {}
  ~Bitmap() { hwloc_bitmap_free(set_); }
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;
  hwloc_bitmap_t get() const { return set_; }
  std::string list() const {
    char* text = nullptr;
    if (hwloc_bitmap_list_asprintf(&text, set_) < 0 || text == nullptr) return "?";
    std::string out(text);
    std::free(text);
    return out;
  }

 private:
  hwloc_bitmap_t set_;
};

// Cores where the machine has them, PUs otherwise (some VMs expose no core objects).
hwloc_obj_type_t core_type(const Topology& topology) {
  return topology.count(HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
}

int cores_inside(const Topology& topology, hwloc_const_cpuset_t set) {
  return hwloc_get_nbobjs_inside_cpuset_by_type(topology.get(), set, core_type(topology));
}

std::string hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string machine_line(const Topology& topology) {
  return std::to_string(topology.count(HWLOC_OBJ_PACKAGE)) + " package(s), " +
         std::to_string(topology.count(HWLOC_OBJ_NUMANODE)) + " NUMA node(s), " +
         std::to_string(topology.count(HWLOC_OBJ_CORE)) + " core(s), " +
         std::to_string(topology.count(HWLOC_OBJ_PU)) + " PU(s)";
}

Status parse_int(std::string_view text, int* out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  if (ec != std::errc() || ptr != end || text.empty()) {
    return Status::Error("'" + std::string(text) + "' is not an integer");
  }
  return Status::Ok();
}

}  // namespace

Status parse_bind_mode(std::string_view text, BindMode* out) {
  if (text == "none") {
    *out = BindMode::kNone;
  } else if (text == "auto") {
    *out = BindMode::kAuto;
  } else {
    return Status::Error("unknown bind mode '" + std::string(text) + "' (expected none or auto)");
  }
  return Status::Ok();
}

Status parse_cpu_slot(std::string_view text, CpuSlot* out) {
  const auto slash = text.find('/');
  const Status syntax = Status::Error("cpu slot '" + std::string(text) +
                                      "': expected i/n with 0 <= i < n, e.g. 0/2");
  if (slash == std::string_view::npos) return syntax;
  CpuSlot slot;
  if (!parse_int(text.substr(0, slash), &slot.index).ok() ||
      !parse_int(text.substr(slash + 1), &slot.count).ok() || slot.count <= 0 ||
      slot.index < 0 || slot.index >= slot.count) {
    return syntax;
  }
  *out = slot;
  return Status::Ok();
}

ItemRange share_of(int total, int index, int parts) {
  if (total <= 0 || parts <= 0) return {};
  const auto bound = [&](int i) {
    return static_cast<int>(static_cast<long long>(i) * total / parts);
  };
  ItemRange range{bound(index), bound(index + 1)};
  if (range.end <= range.begin) range.end = range.begin + 1;  // total < parts: share an item
  return range;
}

void set_compute_threads(int threads) {
  threads = std::max(1, threads);
  Eigen::setNbThreads(threads);
  // The GEMM libraries (oneDNN's OpenMP pool, OpenBLAS's) size their pools to the whole
  // machine unless told.
  kernels::set_gemm_threads(threads);
}

Status bind_rank(const GroupComm& group, const BindOptions& options, Binding* out) {
  Topology topology;
  if (!topology.loaded()) return Status::Error("hwloc cannot load the machine topology");
  hwloc_const_cpuset_t allowed = hwloc_topology_get_allowed_cpuset(topology.get());
  Bitmap current;
  if (hwloc_get_cpubind(topology.get(), current.get(), HWLOC_CPUBIND_PROCESS) != 0) {
    hwloc_bitmap_copy(current.get(), allowed);  // cannot tell: assume unbound
  }

  Binding binding;
  const bool launcher_bound = !hwloc_bitmap_isincluded(allowed, current.get());
  if (launcher_bound) {
    binding.bound = true;
    binding.how = "by the launcher";
    binding.cpus = current.list();
    binding.cores = std::max(1, cores_inside(topology, current.get()));
  } else if (options.mode == BindMode::kNone || !options.slot.given()) {
    binding.how = options.mode == BindMode::kNone ? "not bound (--bind none)"
                                                  : "not bound (no --cpu-slot: node may be shared)";
    binding.cpus = current.list();
    // Unbound ranks of this node share its cores; more threads than that only contend.
    binding.cores = std::max(1, cores_inside(topology, current.get()) / group.local_size());
  } else {
    const hwloc_obj_type_t type = core_type(topology);
    const int total = hwloc_get_nbobjs_inside_cpuset_by_type(topology.get(), allowed, type);
    const ItemRange slot = share_of(total, options.slot.index, options.slot.count);
    const ItemRange mine = share_of(slot.size(), group.local_rank(), group.local_size());
    Bitmap set;
    for (int i = slot.begin + mine.begin; i < slot.begin + mine.end; ++i) {
      hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(topology.get(), allowed, type, i);
      if (core != nullptr) hwloc_bitmap_or(set.get(), set.get(), core->cpuset);
    }
    const std::string slot_text =
        std::to_string(options.slot.index) + "/" + std::to_string(options.slot.count);
    if (hwloc_bitmap_iszero(set.get()) ||
        hwloc_set_cpubind(topology.get(), set.get(), HWLOC_CPUBIND_PROCESS) != 0) {
      return Status::Error("cannot bind node rank " + std::to_string(group.local_rank()) +
                           " of slot " + slot_text + " to PUs " + set.list());
    }
    binding.bound = true;
    binding.how = "slot " + slot_text;
    binding.cpus = set.list();
    binding.cores = mine.size();
  }
  *out = binding;
  return Status::Ok();
}

std::string rank_summary(const GroupComm& group, const Binding& binding) {
  Topology topology;
  const std::string machine = topology.loaded() ? machine_line(topology) : "unknown topology";
  return hostname() + " rank " + std::to_string(group.rank()) + "/" +
         std::to_string(group.size()) + " (node rank " + std::to_string(group.local_rank()) + "/" +
         std::to_string(group.local_size()) + "): " + machine + "; PUs " + binding.cpus + " " +
         binding.how + ", " + std::to_string(binding.cores) + " thread(s)";
}

Status gather_summaries(const GroupComm& group, const std::string& mine, std::string* all) {
  all->clear();
  const int length = static_cast<int>(mine.size());
  const bool root = group.rank() == 0;
  std::vector<int> lengths(root ? group.size() : 0);
  if (MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, group.comm()) !=
      MPI_SUCCESS) {
    return Status::Error("gathering topology summaries: MPI_Gather failed");
  }
  std::vector<int> offsets(lengths.size());
  int total = 0;
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    offsets[i] = total;
    total += lengths[i];
  }
  std::string joined(static_cast<std::size_t>(total), '\0');
  if (MPI_Gatherv(mine.data(), length, MPI_CHAR, joined.data(), lengths.data(), offsets.data(),
                  MPI_CHAR, 0, group.comm()) != MPI_SUCCESS) {
    return Status::Error("gathering topology summaries: MPI_Gatherv failed");
  }
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    if (i > 0) *all += "\n";
    *all += joined.substr(static_cast<std::size_t>(offsets[i]),
                          static_cast<std::size_t>(lengths[i]));
  }
  return Status::Ok();
}

}  // namespace trellis::worker
