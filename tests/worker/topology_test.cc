// Rank binding and topology summaries. Each binding test first puts the process back on the
// whole machine (or on one PU, to play a launcher that bound it), and restores the original
// binding afterwards so the other tests in this binary keep their cores.

#include <gtest/gtest.h>
#include <hwloc.h>
#include <mpi.h>

#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "worker/collectives.h"
#include "worker/topology.h"

namespace trellis::worker {
namespace {

std::unique_ptr<GroupComm> make_group() {
  std::unique_ptr<GroupComm> group;
  Status s = GroupComm::Create(MPI_COMM_WORLD, GroupCommOptions{}, &group);
  EXPECT_TRUE(s.ok()) << s.message();
  return group;
}

// Owns a loaded hwloc topology, remembers the process binding, and restores it on exit.
class BindingSandbox {
 public:
  BindingSandbox() {
    hwloc_topology_init(&topology_);
    hwloc_topology_load(topology_);
    saved_ = hwloc_bitmap_alloc();
    hwloc_get_cpubind(topology_, saved_, HWLOC_CPUBIND_PROCESS);
  }
  ~BindingSandbox() {
    hwloc_set_cpubind(topology_, saved_, HWLOC_CPUBIND_PROCESS);
    hwloc_bitmap_free(saved_);
    hwloc_topology_destroy(topology_);
  }
  // As if started with --bind-to none.
  void unbind() {
    hwloc_set_cpubind(topology_, hwloc_topology_get_allowed_cpuset(topology_),
                      HWLOC_CPUBIND_PROCESS);
  }
  // As if a launcher had bound the process to its last allowed PU.
  std::string bind_to_last_pu() {
    hwloc_bitmap_t one = hwloc_bitmap_alloc();
    hwloc_bitmap_only(one, hwloc_bitmap_last(hwloc_topology_get_allowed_cpuset(topology_)));
    hwloc_set_cpubind(topology_, one, HWLOC_CPUBIND_PROCESS);
    std::string text = list(one);
    hwloc_bitmap_free(one);
    return text;
  }
  std::string current() const {
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    hwloc_get_cpubind(topology_, set, HWLOC_CPUBIND_PROCESS);
    std::string text = list(set);
    hwloc_bitmap_free(set);
    return text;
  }
  std::string allowed() const { return list(hwloc_topology_get_allowed_cpuset(topology_)); }
  int cores() const {
    int n = hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_CORE);
    return n > 0 ? n : hwloc_get_nbobjs_by_type(topology_, HWLOC_OBJ_PU);
  }

 private:
  static std::string list(hwloc_const_bitmap_t set) {
    char* text = nullptr;
    hwloc_bitmap_list_asprintf(&text, set);
    std::string out(text != nullptr ? text : "");
    std::free(text);
    return out;
  }
  hwloc_topology_t topology_ = nullptr;
  hwloc_bitmap_t saved_ = nullptr;
};

// Every rank's string, on every rank.
std::vector<std::string> all_gather(const std::string& mine, int size) {
  constexpr int kWidth = 256;
  std::string padded = mine.substr(0, kWidth);
  padded.resize(kWidth, '\0');
  std::string all(static_cast<std::size_t>(kWidth * size), '\0');
  MPI_Allgather(padded.data(), kWidth, MPI_CHAR, all.data(), kWidth, MPI_CHAR, MPI_COMM_WORLD);
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r) out.emplace_back(all.c_str() + r * kWidth);
  return out;
}

TEST(Topology, ShareOfSplitsEvenlyAndNeverLeavesAPartEmpty) {
  EXPECT_EQ(share_of(4, 0, 2).begin, 0);
  EXPECT_EQ(share_of(4, 0, 2).end, 2);
  EXPECT_EQ(share_of(4, 1, 2).begin, 2);
  EXPECT_EQ(share_of(4, 1, 2).end, 4);
  // Fewer items than parts: parts share items evenly instead of piling onto item 0.
  EXPECT_EQ(share_of(2, 0, 4).begin, 0);
  EXPECT_EQ(share_of(2, 1, 4).begin, 0);
  EXPECT_EQ(share_of(2, 2, 4).begin, 1);
  EXPECT_EQ(share_of(2, 3, 4).begin, 1);
  for (int total : {1, 2, 3, 7, 64}) {
    for (int parts : {1, 2, 3, 4, 5, 8}) {
      std::set<int> covered;
      for (int i = 0; i < parts; ++i) {
        const ItemRange r = share_of(total, i, parts);
        ASSERT_GE(r.size(), 1) << total << " items, part " << i << " of " << parts;
        ASSERT_LE(r.end, total);
        for (int k = r.begin; k < r.end; ++k) covered.insert(k);
        if (total >= parts) {
          // Parts are disjoint and within one item of each other in size.
          ASSERT_LE(r.size(), total / parts + 1);
          if (i > 0) {
            ASSERT_EQ(r.begin, share_of(total, i - 1, parts).end);
          }
        }
      }
      EXPECT_EQ(static_cast<int>(covered.size()), total) << total << " items, " << parts;
    }
  }
}

TEST(Topology, ParsesBindModeAndCpuSlot) {
  BindMode mode = BindMode::kAuto;
  ASSERT_TRUE(parse_bind_mode("none", &mode).ok());
  EXPECT_EQ(mode, BindMode::kNone);
  ASSERT_TRUE(parse_bind_mode("auto", &mode).ok());
  EXPECT_EQ(mode, BindMode::kAuto);
  EXPECT_FALSE(parse_bind_mode("core", &mode).ok());

  CpuSlot slot;
  ASSERT_TRUE(parse_cpu_slot("1/2", &slot).ok());
  EXPECT_EQ(slot.index, 1);
  EXPECT_EQ(slot.count, 2);
  EXPECT_TRUE(slot.given());
  for (const char* bad : {"2/2", "-1/2", "0/0", "1", "a/2", "1/2x", "/2", "1/"}) {
    Status s = parse_cpu_slot(bad, &slot);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("i/n"), std::string::npos) << s.message();
  }
  EXPECT_FALSE(CpuSlot{}.given());
}

TEST(Topology, WholeNodeSlotGivesEachRankItsOwnCores) {
  auto group = make_group();
  ASSERT_NE(group, nullptr);
  BindingSandbox sandbox;
  sandbox.unbind();
  Binding binding;
  Status s = bind_rank(*group, BindOptions{BindMode::kAuto, CpuSlot{0, 1}}, &binding);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_TRUE(binding.bound);
  EXPECT_EQ(binding.how, "slot 0/1");
  EXPECT_EQ(binding.cpus, sandbox.current()) << "reported binding differs from the real one";
  const int cores = sandbox.cores();
  EXPECT_EQ(binding.cores, share_of(cores, group->local_rank(), group->local_size()).size());

  // Ranks of this node are on disjoint cores when there are enough; otherwise shared evenly.
  const auto everyone = all_gather(binding.cpus, group->size());
  const std::set<std::string> distinct(everyone.begin(), everyone.end());
  EXPECT_EQ(static_cast<int>(distinct.size()), std::min(cores, group->local_size()));
}

TEST(Topology, TwoGroupsOnOneNodeGetDifferentCores) {
  auto group = make_group();
  ASSERT_NE(group, nullptr);
  BindingSandbox sandbox;
  if (sandbox.cores() < 2) GTEST_SKIP() << "needs 2 cores";
  // The same ranks playing group 0 of 2, then group 1 of 2: the two never overlap.
  sandbox.unbind();
  Binding first, second;
  ASSERT_TRUE(bind_rank(*group, BindOptions{BindMode::kAuto, CpuSlot{0, 2}}, &first).ok());
  sandbox.unbind();
  ASSERT_TRUE(bind_rank(*group, BindOptions{BindMode::kAuto, CpuSlot{1, 2}}, &second).ok());
  EXPECT_NE(first.cpus, second.cpus);
  EXPECT_EQ(second.how, "slot 1/2");
  const auto firsts = all_gather(first.cpus, group->size());
  const auto seconds = all_gather(second.cpus, group->size());
  for (const auto& a : firsts) {
    for (const auto& b : seconds) EXPECT_NE(a, b) << "group 0 and group 1 share PUs " << a;
  }
}

TEST(Topology, WithoutSlotOrWithBindNoneTheProcessStaysUnbound) {
  auto group = make_group();
  ASSERT_NE(group, nullptr);
  BindingSandbox sandbox;
  sandbox.unbind();
  for (BindOptions options : {BindOptions{BindMode::kAuto, CpuSlot{}},
                              BindOptions{BindMode::kNone, CpuSlot{0, 1}}}) {
    Binding binding;
    ASSERT_TRUE(bind_rank(*group, options, &binding).ok());
    EXPECT_FALSE(binding.bound);
    EXPECT_EQ(sandbox.current(), sandbox.allowed());
    EXPECT_NE(binding.how.find("not bound"), std::string::npos) << binding.how;
    EXPECT_EQ(binding.cores, std::max(1, sandbox.cores() / group->local_size()));
  }
}

TEST(Topology, RespectsABindingTheLauncherMade) {
  auto group = make_group();
  ASSERT_NE(group, nullptr);
  BindingSandbox sandbox;
  if (sandbox.allowed() == "0") GTEST_SKIP() << "one PU: cannot tell bound from unbound";
  const std::string launcher = sandbox.bind_to_last_pu();
  Binding binding;
  ASSERT_TRUE(bind_rank(*group, BindOptions{BindMode::kAuto, CpuSlot{0, 1}}, &binding).ok());
  EXPECT_TRUE(binding.bound);
  EXPECT_EQ(binding.how, "by the launcher");
  EXPECT_EQ(binding.cpus, launcher);
  EXPECT_EQ(sandbox.current(), launcher);
  EXPECT_EQ(binding.cores, 1);
}

TEST(Topology, RankZeroGathersOneLinePerRankInRankOrder) {
  auto group = make_group();
  ASSERT_NE(group, nullptr);
  Binding binding;
  binding.cpus = "0";
  binding.how = "slot 0/1";
  const std::string mine = rank_summary(*group, binding);
  EXPECT_NE(mine.find("core(s)"), std::string::npos) << mine;
  EXPECT_NE(mine.find("PUs 0 slot 0/1, 1 thread(s)"), std::string::npos) << mine;

  std::string all;
  Status s = gather_summaries(*group, mine, &all);
  ASSERT_TRUE(s.ok()) << s.message();
  if (group->rank() != 0) {
    EXPECT_TRUE(all.empty());
    return;
  }
  std::size_t lines = 1, from = 0;
  for (int r = 0; r < group->size(); ++r) {
    const std::size_t at = all.find(" rank " + std::to_string(r) + "/", from);
    ASSERT_NE(at, std::string::npos) << "rank " << r << " missing or out of order in:\n" << all;
    from = at;
  }
  for (char c : all) lines += c == '\n';
  EXPECT_EQ(lines, static_cast<std::size_t>(group->size()));
}

}  // namespace
}  // namespace trellis::worker
