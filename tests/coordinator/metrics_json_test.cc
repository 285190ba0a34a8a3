#include "coordinator/metrics_json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

namespace trellis::coordinator {
namespace {

// Bit for bit, so NaN compares equal to itself and -0.0 differs from 0.0.
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(MetricsJsonTest, RoundTripsEveryDoubleExactly) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const MetricMap metrics = {{"val_acc", 0.1 + 0.2},
                             {"tiny", std::numeric_limits<double>::denorm_min()},
                             {"huge", std::numeric_limits<double>::max()},
                             {"neg", -1.5e-300},
                             {"zero", -0.0},
                             {"int", 128},
                             {"up", std::numeric_limits<double>::infinity()},
                             {"down", -std::numeric_limits<double>::infinity()},
                             {"nan", nan}};
  const std::string text = encode_metrics(metrics);
  MetricMap back;
  ASSERT_TRUE(decode_metrics(text, &back).ok()) << text;
  ASSERT_EQ(back.size(), metrics.size()) << text;
  for (const auto& [name, value] : metrics) {
    if (std::isnan(value)) {
      EXPECT_TRUE(std::isnan(back.at(name))) << name;
    } else {
      EXPECT_TRUE(same_bits(back.at(name), value)) << name << " in " << text;
    }
  }
  EXPECT_NE(text.find("\"nan\":null"), std::string::npos) << text;
  EXPECT_NE(text.find("\"up\":1e999"), std::string::npos) << text;
}

TEST(MetricsJsonTest, NamesAreEscapedAndUnescaped) {
  const MetricMap metrics = {
      {"quote\"back\\slash", 1}, {"tab\tnew\nline", 2}, {"ünï", 3}, {"", 4}};
  const std::string text = encode_metrics(metrics);
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  MetricMap back;
  ASSERT_TRUE(decode_metrics(text, &back).ok()) << text;
  EXPECT_EQ(back, metrics);
  ASSERT_TRUE(decode_metrics(" { \"a\" : 1 , \"b\":-2e3 } ", &back).ok());
  EXPECT_EQ(back, (MetricMap{{"a", 1}, {"b", -2000}}));
  ASSERT_TRUE(decode_metrics("{}", &back).ok());
  EXPECT_TRUE(back.empty());
  EXPECT_EQ(encode_metrics({}), "{}");
}

TEST(MetricsJsonTest, RefusesWhatItDidNotWrite) {
  MetricMap out;
  for (const char* bad : {"", "[]", "{", "{\"a\"}", "{\"a\":}", "{\"a\":\"text\"}", "{\"a\":1,}",
                          "{\"a\":1} trailing", "{a:1}", "{\"a\":1 \"b\":2}", "{\"\\x\":1}"}) {
    EXPECT_FALSE(decode_metrics(bad, &out).ok()) << bad;
  }
}

}  // namespace
}  // namespace trellis::coordinator
