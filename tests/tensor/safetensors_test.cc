// safetensors encode/decode, corruption handling, atomic writes, and
// checkpoint mismatch reporting.
#include "tensor/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tensor/checkpoint.h"
#include "tensor/model_spec.h"

namespace dnnd {
namespace {

std::string Header(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

TEST(Safetensors, RoundTripWithMetadata) {
  nn::NamedTensors t = {{"b", Tensor::FromVector({2}, {1, 2})},
                        {"a", Tensor::FromVector({1, 3}, {3, 4, 5})}};
  auto f = DecodeSafetensors(EncodeSafetensors(t, {{"k", "v"}}), "mem");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ(f->tensors.size(), 2u);
  EXPECT_EQ(f->tensors[0].first, "a");
  EXPECT_EQ(f->tensors[0].second.shape(), (Shape{1, 3}));
  EXPECT_EQ(f->tensors[1].second.ToVector(), (std::vector<float>{1, 2}));
  EXPECT_EQ(f->metadata.at("k"), "v");
}

TEST(Safetensors, ReadsHalfBfloatAndDouble) {
  // F16 1.0 = 0x3C00, BF16 -2.0 = 0xC000, F64 0.5.
  std::string data = std::string("\x00\x3C", 2) + std::string("\x00\xC0", 2) +
                     std::string("\x00\x00\x00\x00\x00\x00\xE0\x3F", 8);
  auto f = DecodeSafetensors(Header(R"({"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},)"
                                    R"("b":{"dtype":"BF16","shape":[1],"data_offsets":[2,4]},)"
                                    R"("d":{"dtype":"F64","shape":[1],"data_offsets":[4,12]}})",
                                    data),
                             "mem");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->tensors[0].second.item(), -2.0f);  // "b"
  EXPECT_EQ(f->tensors[1].second.item(), 0.5f);   // "d"
  EXPECT_EQ(f->tensors[2].second.item(), 1.0f);   // "h"
}

TEST(Safetensors, CorruptionIsReportedNotCrashed) {
  const std::string ok_entry = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Case {
    std::string bytes, expect;
  };
  std::vector<Case> cases = {
      {"abc", "shorter than"},
      // Not safetensors at all (the first 8 bytes read as a huge length):
      // malformed, not too large.
      {std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8), "runs past the end"},
      {std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8) + "{}", "runs past the end"},
      {Header("{not json", ""), "not valid JSON"},
      {Header("[1]", ""), "not a JSON object"},
      {Header(ok_entry, "1234"), "outside"},
      {Header(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 0)),
       "8 bytes for shape [3]"},
      {Header(R"({"w":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "x"), "dtype I8"},
      {Header(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", ""), "negative"},
      {Header(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
       "overflows"},
      {Header(
           R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           std::string(8, 0)),
       "overlap"},
      {Header(R"({"__metadata__":{"k":1}})", ""), "not a string"},
      {Header(R"({"w":{"dtype":"F32"}})", ""), "needs dtype"},
  };
  for (const auto& c : cases) {
    auto f = DecodeSafetensors(c.bytes, "file.st");
    ASSERT_FALSE(f.ok()) << c.expect;
    EXPECT_NE(f.status().message().find(c.expect), std::string::npos) << f.status().message();
    EXPECT_NE(f.status().code(), StatusCode::kResourceExhausted) << f.status().message();
  }
  // A header that is there but over the limit: resource exhaustion.
  auto big =
      DecodeSafetensors(Header(ok_entry, std::string(8, 0)), "file.st", {.max_header_bytes = 16});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted) << big.status().message();
  EXPECT_NE(big.status().message().find("exceeds the limit of 16"), std::string::npos)
      << big.status().message();
}

TEST(Safetensors, LimitsAreCheckedFromTheHeaderBeforeDecoding) {
  // F16 doubles in size when decoded: 600 halves are 2400 float32 bytes.
  const std::string halves = Header(
      R"({"h":{"dtype":"F16","shape":[600],"data_offsets":[0,1200]}})", std::string(1200, '\0'));
  auto f = DecodeSafetensors(halves, "up.st", {.max_decoded_bytes = 2000});
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(f.status().message().find("past 2000 decoded bytes"), std::string::npos)
      << f.status().message();
  EXPECT_TRUE(DecodeSafetensors(halves, "up.st", {.max_decoded_bytes = 2400}).ok());
  // Tensor count and header size.
  std::string many = "{";
  for (int i = 0; i < 5; ++i)
    many += (i ? "," : "") + std::string("\"t") + std::to_string(i) +
            R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
  many += "}";
  auto m = DecodeSafetensors(Header(many, ""), "many.st", {.max_tensors = 4});
  EXPECT_NE(m.status().message().find("5 tensors; the limit is 4"), std::string::npos)
      << m.status().message();
  auto h = DecodeSafetensors(Header(many, ""), "big.st", {.max_header_bytes = 64});
  EXPECT_EQ(h.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(h.status().message().find("exceeds the limit of 64 bytes"), std::string::npos)
      << h.status().message();
}

TEST(Safetensors, AtomicSaveReplacesWholeAndIgnoresLeftoverTemp) {
  auto dir = std::filesystem::temp_directory_path() / ("dnnd_st_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "m.safetensors").string();
  ASSERT_TRUE(SaveSafetensors(path, {{"w", Tensor::Full({1000}, 1.0f)}}).ok());
  // A crashed writer's temp file must not confuse later saves or loads.
  { std::ofstream(path + ".tmp.12345") << "garbage"; }
  ASSERT_TRUE(SaveSafetensors(path, {{"w", Tensor::Full({2}, 2.0f)}}).ok());
  auto f = LoadSafetensors(path);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->tensors[0].second.ToVector(), (std::vector<float>{2.0f, 2.0f}));
  std::filesystem::remove_all(dir);
}

TEST(Checkpoint, LoadParametersListsEveryDifference) {
  auto spec =
      ValueOrThrow(ParseModelSpecText("[model]\ninput=[4]\n[[model.layers]]\ntype=\"linear\"\nout="
                                      "3\n[[model.layers]]\ntype=\"relu\"\n"
                                      "[[model.layers]]\ntype=\"linear\"\nout=2\n",
                                      "m"));
  auto model = ValueOrThrow(BuildModel(spec, 1));
  Status s = LoadParameters(*model, {{"0.weight", Tensor::Zeros({3, 5})},
                                     {"0.bias", Tensor::Zeros({3})},
                                     {"2.weight", Tensor::Zeros({2, 3})},
                                     {"9.weight", Tensor::Zeros({1})}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing: 2.bias"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("unexpected: 9.weight"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("0.weight has [3, 4] in the model but [3, 5] in the checkpoint"),
            std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace dnnd
