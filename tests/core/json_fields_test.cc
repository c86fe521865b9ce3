#include "core/json_fields.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace dnnd {
namespace {

TEST(JsonFields, RejectUnknownNamesTheFirstFieldNotKnown) {
  const boost::json::object body = boost::json::parse(R"({"epochs": 2, "lr": 0.1})").as_object();
  const JsonFields fields{body, ""};
  EXPECT_TRUE(fields.RejectUnknown({"epochs", "lr", "batch"}).ok());
  const boost::json::object typo =
      boost::json::parse(R"({"epochs": 2, "epoch": 1, "learning_rate": 0.5})").as_object();
  Status s = JsonFields{typo, "job"}.RejectUnknown({"epochs", "lr"});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "job: unknown field 'epoch' (did you mean 'epochs'?); expected epochs, lr");
  s = JsonFields{typo, ""}.RejectUnknown({"epochs", "epoch", "lr"});
  EXPECT_EQ(s.message(), "unknown field 'learning_rate'; expected epochs, epoch, lr");
  s = JsonFields{typo, ""}.RejectUnknown({});
  EXPECT_EQ(s.message(), "unknown field 'epochs'; expected no fields");
}

}  // namespace
}  // namespace dnnd
