// The flat-object scanner on what the store writes, and on what it must refuse.

#include "coordinator/dashboard/flat_json.h"

#include <gtest/gtest.h>

#include "coordinator/metrics_json.h"
#include "coordinator/params_codec.h"

namespace trellis::dashboard {
namespace {

using Members = std::vector<std::pair<std::string_view, std::string_view>>;

TEST(FlatJsonTest, ReadsWhatTheStoreWritesValueTextAsWritten) {
  std::string params;
  ASSERT_TRUE(coordinator::params_to_json(
                  {{"lr", 0.001}, {"units", std::int64_t{64}}, {"act", std::string(R"(a"b,c})")}},
                  &params)
                  .ok());
  Members out;
  ASSERT_TRUE(scan_flat_object(params, &out)) << params;
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].first, "act");
  EXPECT_EQ(out[0].second, R"("a\"b,c}")");
  EXPECT_EQ(out[1].second, "0.001");
  EXPECT_EQ(out[2].second, "64");

  const std::string metrics = coordinator::encode_metrics(
      {{"inf", INFINITY}, {"nan", NAN}, {"val_acc", 0.5}});
  ASSERT_TRUE(scan_flat_object(metrics, &out)) << metrics;
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].second, "1e999");
  EXPECT_EQ(out[1].second, "null");
  EXPECT_EQ(out[2].second, "0.5");

  ASSERT_TRUE(scan_flat_object(" { } ", &out));
  EXPECT_TRUE(out.empty());
}

TEST(FlatJsonTest, RefusesWhatIsNotAFlatObject) {
  Members out;
  for (const char* bad : {"", "[]", "{", R"({"a":})", R"({"a" 1})", R"({"a":{"b":1}})",
                          R"({"a":[1]})", R"({"a":1,})", R"({"a":1} x)", R"({"a":"open})",
                          "{a:1}"})
    EXPECT_FALSE(scan_flat_object(bad, &out)) << bad;
}

}  // namespace
}  // namespace trellis::dashboard
