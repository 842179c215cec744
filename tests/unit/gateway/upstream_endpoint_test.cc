#include <gtest/gtest.h>

#include "gateway/upstream_pool.h"

namespace infergate::gateway {
namespace {

TEST(ParseUpstreamEndpoint, Shapes) {
  auto v4 = parse_upstream_endpoint("10.0.0.1:8000");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "10.0.0.1");
  EXPECT_EQ(v4->port, 8000);
  EXPECT_EQ(v4->host_port, "10.0.0.1:8000");
  auto v6 = parse_upstream_endpoint("[fd00::1]:8000");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "fd00::1");
  EXPECT_EQ(v6->port, 8000);
  auto name = parse_upstream_endpoint("vllm-0.vllm:8000");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->host, "vllm-0.vllm");
  for (std::string_view bad : {"", "host", "host:", ":80", "[::1]", "[::1]8000", "h:8x", "h:-1"}) {
    EXPECT_FALSE(parse_upstream_endpoint(bad)) << bad;
  }
}

}  // namespace
}  // namespace infergate::gateway
