// ModelShelf on real files: which models stay, which go, what index.json says, and what a
// restart leaves behind.
#include "coordinator/model_shelf.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include "tests/coordinator/temp_store.h"

namespace trellis::coordinator {
namespace {

namespace fs = std::filesystem;
using Entry = ModelShelf::Entry;

Entry entry(std::int32_t number, double loss) {
  return Entry{100 + number, number, loss, -loss, {{"lr", 0.01 * number}}, {{"val_acc", -loss}}};
}

// A model whose bytes say whose it is, every byte value included.
std::vector<std::uint8_t> model_of(std::int32_t number) {
  std::vector<std::uint8_t> bytes(300 + static_cast<std::size_t>(number));
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<std::uint8_t>(i + static_cast<std::size_t>(number) * 7);
  return bytes;
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The trial numbers whose model files are in `dir`; any other file of the shelf's fails.
std::set<std::int32_t> files_in(const std::string& dir) {
  std::set<std::int32_t> numbers;
  for (const auto& f : fs::directory_iterator(dir)) {
    const std::string name = f.path().filename().string();
    if (name == "index.json" || name == "notes.txt") continue;  // notes: the researcher's
    EXPECT_EQ(name.rfind("trial-", 0), 0u) << name;
    EXPECT_TRUE(name.ends_with(".model")) << name;
    numbers.insert(std::stoi(name.substr(6)));
  }
  return numbers;
}

std::vector<std::int32_t> numbers_of(const std::vector<Entry>& entries) {
  std::vector<std::int32_t> out;
  for (const Entry& e : entries) out.push_back(e.number);
  return out;
}

class ModelShelfTest : public ::testing::TestWithParam<int> {
 protected:
  testing::TempDir tmp_;
  std::string dir_ = tmp_.file("store.db.models/exp");
};

// Offered in shuffled order, the shelf ends with the best K of all, best first, and only their
// files, each with its own bytes; equal losses go by trial number.
TEST_P(ModelShelfTest, KeepsTheBestKWhateverTheOrderTheyComeIn) {
  const int keep = GetParam();
  std::vector<Entry> all;
  for (int n = 0; n < 12; ++n) all.push_back(entry(n, (n * 5) % 7 * 0.1));  // ties among them
  std::vector<Entry> ranked = all;
  std::stable_sort(ranked.begin(), ranked.end(), [](const Entry& a, const Entry& b) {
    return a.loss < b.loss || (a.loss == b.loss && a.number < b.number);
  });
  ranked.resize(std::min<std::size_t>(ranked.size(), keep));
  std::mt19937 rng(keep);
  for (int round = 0; round < 3; ++round) {
    testing::TempDir tmp;
    const std::string dir = tmp.file("m/exp");
    std::shuffle(all.begin(), all.end(), rng);
    ModelShelf shelf(dir, keep);
    for (const Entry& e : all) ASSERT_TRUE(shelf.offer(e, model_of(e.number)).ok());
    EXPECT_EQ(numbers_of(shelf.kept()), numbers_of(ranked));
    const std::vector<std::int32_t> want = numbers_of(ranked);
    EXPECT_EQ(files_in(dir), std::set<std::int32_t>(want.begin(), want.end()));
    for (std::int32_t n : want) EXPECT_EQ(read_bytes(shelf.model_path(n)), model_of(n));
  }
}

INSTANTIATE_TEST_SUITE_P(Keep, ModelShelfTest, ::testing::Values(1, 3, 5, 20));

TEST(ModelShelf, TheIndexListsTheShelfBestFirst) {
  testing::TempDir tmp;
  const std::string dir = tmp.file("s.db.models/exp");
  ModelShelf shelf(dir, 2);
  ASSERT_TRUE(shelf.offer(entry(4, 0.3), model_of(4)).ok());
  ASSERT_TRUE(shelf.offer(entry(2, 0.1), {}).ok());  // completed, its model too large to send
  ASSERT_TRUE(shelf.offer(entry(7, 0.2), model_of(7)).ok());
  std::ifstream in(dir + "/index.json");
  const nlohmann::json index = nlohmann::json::parse(in);
  EXPECT_EQ(index["keep"], 2);
  ASSERT_EQ(index["models"].size(), 2u);
  EXPECT_EQ(index["models"][0]["number"], 2);
  EXPECT_EQ(index["models"][0]["rank"], 1);
  EXPECT_TRUE(index["models"][0]["file"].is_null()) << "trial 2 has no model, yet ranks first";
  EXPECT_EQ(index["models"][1]["number"], 7);
  EXPECT_EQ(index["models"][1]["trial_id"], 107);
  EXPECT_EQ(index["models"][1]["file"], "trial-7.model");
  EXPECT_DOUBLE_EQ(index["models"][1]["objective"].get<double>(), -0.2);
  EXPECT_DOUBLE_EQ(index["models"][1]["params"]["lr"].get<double>(), 0.07);
  EXPECT_DOUBLE_EQ(index["models"][1]["final_metrics"]["val_acc"].get<double>(), -0.2);
  EXPECT_EQ(files_in(dir), std::set<std::int32_t>{7}) << "trial 4 was pushed out";
}

// What the commands read back (predict, show, the dashboard) is what the shelf wrote, and a
// trial that ranks without a file reads as such, not as a missing trial.
TEST(ModelShelf, TheIndexReadsBackAsWritten) {
  testing::TempDir tmp;
  const std::string dir = tmp.file("s.db.models/exp");
  ShelfIndex shelf;
  const Status missing = read_shelf_index(dir, &shelf);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("index.json does not exist"), std::string::npos)
      << missing.message();
  ModelShelf writer(dir, 2);
  ASSERT_TRUE(writer.offer(entry(4, 0.3), model_of(4)).ok());
  ASSERT_TRUE(writer.offer(entry(2, 0.1), {}).ok());
  ASSERT_TRUE(read_shelf_index(dir, &shelf).ok());
  EXPECT_EQ(shelf.keep, 2);
  ASSERT_EQ(shelf.models.size(), 2u);
  EXPECT_EQ(shelf.models[0].number, 2);
  EXPECT_EQ(shelf.models[0].rank, 1);
  EXPECT_TRUE(shelf.models[0].path.empty());
  EXPECT_EQ(shelf.models[1].number, 4);
  EXPECT_EQ(shelf.models[1].path, writer.model_path(4));
  EXPECT_EQ(read_bytes(shelf.models[1].path), model_of(4));
  EXPECT_DOUBLE_EQ(std::get<double>(shelf.models[1].params.at("lr")), 0.04);

  KeptModel kept;
  const Status no_file = find_kept_model(dir, 2, &kept);
  ASSERT_FALSE(no_file.ok());
  EXPECT_NE(no_file.message().find("ranks 1 of the best 2, but its model was not kept"),
            std::string::npos) << no_file.message();
  const Status other = find_kept_model(dir, 9, &kept);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.message().find("those are trial(s) 2, 4"), std::string::npos)
      << other.message();
  EXPECT_FALSE(find_kept_model(dir, -1, &kept).ok()) << "the best (trial 2) has no file";
  ASSERT_TRUE(find_kept_model(dir, 4, &kept).ok());
  EXPECT_EQ(kept.rank, 2);

  std::ofstream(dir + "/index.json") << "{\"models\": [";
  const Status torn = read_shelf_index(dir, &shelf);
  ASSERT_FALSE(torn.ok());
  EXPECT_NE(torn.message().find("not a model shelf index"), std::string::npos) << torn.message();
}

// A resent Done offers its trial again: one entry, the file rewritten, nothing else moves.
TEST(ModelShelf, AResentTrialReplacesItself) {
  testing::TempDir tmp;
  const std::string dir = tmp.file("s.db.models/exp");
  ModelShelf shelf(dir, 2);
  ASSERT_TRUE(shelf.offer(entry(1, 0.5), model_of(1)).ok());
  ASSERT_TRUE(shelf.offer(entry(3, 0.4), model_of(3)).ok());
  ASSERT_TRUE(shelf.offer(entry(1, 0.5), model_of(1)).ok());
  EXPECT_EQ(numbers_of(shelf.kept()), (std::vector<std::int32_t>{3, 1}));
  EXPECT_EQ(files_in(dir), (std::set<std::int32_t>{1, 3}));
}

// After a restart the store says which trials completed: the shelf keeps the best of them,
// finds which have files, and removes any other model (one written before a crash whose Done
// was never stored, one cut short mid-write). It then goes on as if it had never stopped.
TEST(ModelShelf, ARestartKeepsWhatTheStoreRanksBestAndRemovesTheRest) {
  testing::TempDir tmp;
  const std::string dir = tmp.file("s.db.models/exp");
  {
    ModelShelf before(dir, 2);
    ASSERT_TRUE(before.offer(entry(1, 0.5), model_of(1)).ok());
    ASSERT_TRUE(before.offer(entry(2, 0.3), model_of(2)).ok());
    ASSERT_TRUE(before.offer(entry(6, 0.1), model_of(6)).ok());  // its Done never stored
  }
  std::ofstream(dir + "/trial-2.model.tmp") << "half";
  std::ofstream(dir + "/notes.txt") << "the researcher's";
  ModelShelf after(dir, 2);
  // The store has trials 1, 2 and 5 completed; trial 5's model never arrived.
  ASSERT_TRUE(after.restore({entry(1, 0.5), entry(5, 0.4), entry(2, 0.3)}).ok());
  EXPECT_EQ(numbers_of(after.kept()), (std::vector<std::int32_t>{2, 5}));
  EXPECT_TRUE(after.kept()[0].has_model);
  EXPECT_FALSE(after.kept()[1].has_model);
  EXPECT_FALSE(fs::exists(dir + "/trial-6.model"));
  EXPECT_FALSE(fs::exists(dir + "/trial-1.model"));
  EXPECT_FALSE(fs::exists(dir + "/trial-2.model.tmp"));
  EXPECT_TRUE(fs::exists(dir + "/notes.txt")) << "only the shelf's own files are its to remove";
  EXPECT_EQ(read_bytes(dir + "/trial-2.model"), model_of(2));
  // Trial 6's Done comes again now, and takes its place.
  ASSERT_TRUE(after.offer(entry(6, 0.1), model_of(6)).ok());
  EXPECT_EQ(numbers_of(after.kept()), (std::vector<std::int32_t>{6, 2}));
  EXPECT_EQ(files_in(dir), (std::set<std::int32_t>{2, 6}));
}

TEST(ModelShelf, KeepingNoneTouchesNoFile) {
  testing::TempDir tmp;
  const std::string dir = tmp.file("s.db.models/exp");
  ModelShelf shelf(dir, 0);
  ASSERT_TRUE(shelf.restore({entry(1, 0.5)}).ok());
  ASSERT_TRUE(shelf.offer(entry(2, 0.1), model_of(2)).ok());
  EXPECT_TRUE(shelf.kept().empty());
  EXPECT_FALSE(fs::exists(tmp.file("s.db.models")));
}

TEST(ModelShelf, AShelfThatCannotBeWrittenSaysWhichModelAndWhy) {
  testing::TempDir tmp;
  std::ofstream(tmp.file("blocker")) << "a file where the directory should be";
  ModelShelf shelf(tmp.file("blocker/exp"), 2);
  const Status s = shelf.offer(entry(3, 0.2), model_of(3));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("the model of trial 3"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("directory"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace trellis::coordinator
