// The image half of predict (ImageInputBatch), without a controller: a
// colour PNG for a [3, h, w] model becomes one channel-major RGB sample,
// scaled as training pixels are; grayscale models take images as before;
// mismatches are clear errors.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include "roles/controller/predictor.h"

namespace dnnd {
namespace {

void AppendBytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                             static_cast<size_t>(size));
}

std::string Png(int w, int h, int channels, const std::vector<uint8_t>& interleaved) {
  std::string out;
  stbi_write_png_to_func(AppendBytes, &out, w, h, channels, interleaved.data(), w * channels);
  return out;
}

// A 4x2 RGB image: pixel (y, x) is (10 x + y, 100 + x, 250 - 10 y).
std::vector<uint8_t> Rgb() {
  std::vector<uint8_t> px;
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x) {
      px.push_back(static_cast<uint8_t>(10 * x + y));
      px.push_back(static_cast<uint8_t>(100 + x));
      px.push_back(static_cast<uint8_t>(250 - 10 * y));
    }
  return px;
}

TEST(PredictImage, AColourPngForAColourModelIsChannelMajorRgb) {
  bool inverted = true;
  auto x = ImageInputBatch(Png(4, 2, 3, Rgb()), {3, 2, 4}, {0.0f}, {1.0f}, "auto", ImageLimits{},
                           &inverted);
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  EXPECT_FALSE(inverted);  // auto never inverts a colour image
  EXPECT_EQ(x->shape(), (Shape{1, 3, 2, 4}));
  const std::vector<float> v = x->ToVector();
  for (int y = 0; y < 2; ++y)
    for (int xx = 0; xx < 4; ++xx) {
      EXPECT_FLOAT_EQ(v[0 * 8 + y * 4 + xx], (10 * xx + y) / 255.0f);
      EXPECT_FLOAT_EQ(v[1 * 8 + y * 4 + xx], (100 + xx) / 255.0f);
      EXPECT_FLOAT_EQ(v[2 * 8 + y * 4 + xx], (250 - 10 * y) / 255.0f);
    }
  // Scaled as training pixels: (x/255 - mean) / std.
  auto s = ImageInputBatch(Png(4, 2, 3, Rgb()), {3, 2, 4}, {0.5f}, {0.25f}, "false", ImageLimits{},
                           &inverted);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(s->ToVector()[8], (100 / 255.0f - 0.5f) / 0.25f, 1e-5);
  // Resized to the model's size, still three planes.
  auto r = ImageInputBatch(Png(4, 2, 3, Rgb()), {3, 8, 8}, {0.0f}, {1.0f}, "auto", ImageLimits{},
                           &inverted);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->shape(), (Shape{1, 3, 8, 8}));
}

TEST(PredictImage, GrayscaleModelsStillTakeImagesAndMismatchesAreErrors) {
  bool inverted = false;
  // A colour image for a grayscale model: converted to luma, as before.
  auto g = ImageInputBatch(Png(4, 2, 3, Rgb()), {1, 2, 4}, {0.0f}, {1.0f}, "false", ImageLimits{},
                           &inverted);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(g->shape(), (Shape{1, 1, 2, 4}));
  // A grayscale image for a colour model: refused, saying why.
  std::vector<uint8_t> grey(8, 128);
  auto c = ImageInputBatch(Png(4, 2, 1, grey), {3, 2, 4}, {0.0f}, {1.0f}, "auto", ImageLimits{},
                           &inverted);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("grayscale"), std::string::npos) << c.status().message();
  // A model input that is no image of 1 or 3 channels.
  auto four = ImageInputBatch(Png(4, 2, 3, Rgb()), {4, 2, 4}, {0.0f}, {1.0f}, "auto", ImageLimits{},
                              &inverted);
  ASSERT_FALSE(four.ok());
  EXPECT_NE(four.status().message().find("[4, 2, 4]"), std::string::npos)
      << four.status().message();
}

}  // namespace
}  // namespace dnnd
