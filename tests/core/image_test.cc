// Image decoding (core/image.h): only PNG and JPEG by their magic bytes; the
// header's dimensions, a JPEG's scans and a PNG's inflated size are checked
// before any pixel is decoded; corrupt and cut-short files are named errors.
#include "core/image.h"

#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <chrono>

#include "tests/core/hostile_files.h"

namespace dnnd {
namespace {

void Append(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data),
                                             static_cast<size_t>(size));
}

std::string Gray(int w, int h, bool jpeg) {
  std::vector<uint8_t> pixels(static_cast<size_t>(w) * h);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
  std::string out;
  if (jpeg)
    stbi_write_jpg_to_func(Append, &out, w, h, 1, pixels.data(), 90);
  else
    stbi_write_png_to_func(Append, &out, w, h, 1, pixels.data(), w);
  return out;
}

TEST(ImageLimits, RealPngAndJpegDecode) {
  for (bool jpeg : {false, true}) {
    auto img = DecodeGrayImage(Gray(40, 30, jpeg), ImageLimits{});
    ASSERT_TRUE(img.ok()) << img.status().ToString();
    EXPECT_EQ(img->width, 40);
    EXPECT_EQ(img->height, 30);
  }
}

TEST(ImageLimits, OnlyPngAndJpegByTheirMagicBytes) {
  // A 1x1 BMP and a GIF header: stb reads both, we refuse both.
  const std::string bmp = std::string("BM", 2) + std::string(60, '\0');
  const std::string gif = "GIF89a\x01\x00\x01\x00\x00\x00\x00;";
  for (const std::string& body : {bmp, gif}) {
    auto r = DecodeGrayImage(body, ImageLimits{});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("only PNG and JPEG"), std::string::npos)
        << r.status().message();
  }
  EXPECT_EQ(SniffImageFormat(Gray(2, 2, false)), ImageFormat::kPng);
  EXPECT_EQ(SniffImageFormat(Gray(2, 2, true)), ImageFormat::kJpeg);
}

TEST(ImageLimits, DimensionsAreCheckedFromTheHeader) {
  auto r = DecodeGrayImage(Gray(100, 50, false), {.max_pixels = 4999});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(
                "100x50 pixels; the limit is 4999 pixels (controller.max_image_pixels)"),
            std::string::npos)
      << r.status().message();
}

TEST(ImageLimits, AHeaderOfTheLargestDimensionsIsRefusedWithoutOverflow) {
  // Found by the image fuzzer (UBSan): 4294967295 x 4294967295 overflowed
  // the pixel count's int64 product.
  std::string dims;
  testing::PutBe32(dims, 0xFFFFFFFFu);
  testing::PutBe32(dims, 0xFFFFFFFFu);
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) +
                          testing::PngChunk("IHDR", dims + std::string("\x08\x00\x00\x00\x00", 5)) +
                          testing::PngChunk("IEND", "");
  auto r = DecodeGrayImage(png, ImageLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("4294967295x4294967295 pixels"), std::string::npos)
      << r.status().message();
}

TEST(ImageLimits, AJpegOfThousandsOfEmptyScansIsRefusedAtOnce) {
  const std::string jpeg = testing::ProgressiveJpegOfEmptyScans(2048, 2048, 20000);
  const auto start = std::chrono::steady_clock::now();
  auto r = DecodeGrayImage(jpeg, ImageLimits{});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("more than 64 scans"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("controller.max_jpeg_scans"), std::string::npos);
  EXPECT_LT(s, 1.0);
  // The same structure with few scans is within the limit and decodes.
  auto few = DecodeGrayImage(testing::ProgressiveJpegOfEmptyScans(64, 64, 10), ImageLimits{});
  EXPECT_TRUE(few.ok()) << few.status().ToString();
}

TEST(ImageLimits, APngZlibBombIsRefusedAfterInflatingOnlyWhatItsHeaderDeclares) {
  // 1000 x 1000 declares 1,001,000 bytes of scanlines; the IDAT holds 256 MiB.
  const std::string png = testing::PngZlibBomb(1000, 1000, 256 << 20);
  ASSERT_LT(png.size(), 400000u);
  const long before = testing::PeakRssMib();
  auto r = DecodeGrayImage(png, ImageLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(
      r.status().message().find("inflates past the 1001000 bytes its 1000x1000 header declares"),
      std::string::npos)
      << r.status().message();
  EXPECT_LT(testing::PeakRssMib() - before, 32);
  // Exactly the declared size decodes.
  auto ok = DecodeGrayImage(testing::PngZlibBomb(1000, 1000, 1001000), ImageLimits{});
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST(ImageLimits, APngWhoseImageDataZlibRefusesIsRefusedBeforeItIsDecoded) {
  // Found by the image fuzzer: a 58x2 RGBA PNG with two cut-short IDAT zlib
  // streams. stb 2.27 decoded zeros past their end until it asked for 2 GiB.
  const std::string png(
      "\x89PNG\x0d\x0a\x1a\x0a\x00\x00\x00\x0dIHDR\x00\x00\x00:\x00\x00\x00\x02\x08\x06\x00"
      "\x00\x00r\xb6\x0d$\x00\x00\x00\x13IDATx\x9c\x63``db\xff\xff\xff\xff\xff\xff\xff\xff"
      "\xff\xffN\x08r\x01\x44NB\x00\x00\x13IDATx\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
      "\xff\xff\x65g\x80\x31\x00\x01\x44NB`\x82",
      96);
  // Its IHDR checksum was wrong too, which libpng refuses first; with it
  // right, the image data is what is refused.
  const std::string ihdr = png.substr(12, 17);
  const std::string fixed =
      png.substr(0, 12) + testing::PngChunk("IHDR", ihdr.substr(4)).substr(4) + png.substr(33);
  ASSERT_EQ(fixed.size(), png.size());
  const long before = testing::PeakRssMib();
  auto r = DecodeGrayImage(fixed, ImageLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("PNG image data ends before its zlib stream does"),
            std::string::npos)
      << r.status().message();
  EXPECT_LT(testing::PeakRssMib() - before, 32);

  // A real PNG whose image data is cut short after a few bytes, and one
  // whose zlib header is wrong: both named before libpng starts.
  const std::string real = Gray(40, 30, false);
  const size_t idat = real.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  // One complete IDAT chunk holding the zlib header and 6 bytes of its first
  // block, then IEND (the inflate check reads no CRCs).
  const std::string iend("\0\0\0\0IEND\xae\x42\x60\x82", 12);
  const std::string cut = real.substr(0, idat - 4) + std::string("\0\0\0\x08IDAT", 8) +
                          real.substr(idat + 4, 8) + std::string(4, '\0') + iend;
  r = DecodeGrayImage(cut, ImageLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("ends before its zlib stream does"), std::string::npos)
      << r.status().message();
  std::string corrupt = real;
  corrupt[idat + 4] = '\0';  // the zlib header's compression method
  r = DecodeGrayImage(corrupt, ImageLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("PNG image data is corrupt (incorrect header check)"),
            std::string::npos)
      << r.status().message();
}

}  // namespace
}  // namespace dnnd

namespace dnnd {
namespace {

std::string Rgb(int w, int h, const std::vector<uint8_t>& interleaved, bool jpeg = false) {
  std::string out;
  if (jpeg)
    stbi_write_jpg_to_func(Append, &out, w, h, 3, interleaved.data(), 100);
  else
    stbi_write_png_to_func(Append, &out, w, h, 3, interleaved.data(), w * 3);
  return out;
}

TEST(ColourImages, RgbDecodesAndLaysOutChannelMajor) {
  // 2x2: red, green / blue, white.
  const std::vector<uint8_t> px = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
  auto img = DecodeImage(Rgb(2, 2, px), 3, ImageLimits{});
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->channels, 3);
  EXPECT_EQ(img->pixels, px);
  EXPECT_EQ(ChannelMajor(*img), (std::vector<uint8_t>{255, 0, 0, 255,  // R plane
                                                      0, 255, 0, 255,  // G plane
                                                      0, 0, 255, 255}));
  // Resizing keeps three channels.
  Image big = ResizeImage(*img, 4, 4);
  EXPECT_EQ(big.channels, 3);
  EXPECT_EQ(big.pixels.size(), 4u * 4 * 3);
  // The same colour image asked for as grayscale: one luma channel, as before.
  auto grey = DecodeGrayImage(Rgb(2, 2, px), ImageLimits{});
  ASSERT_TRUE(grey.ok());
  EXPECT_EQ(grey->channels, 1);
  EXPECT_EQ(grey->pixels.size(), 4u);
  EXPECT_EQ(grey->pixels[3], 255);
  // A JPEG in colour too.
  std::vector<uint8_t> flat(8 * 8 * 3);
  for (size_t i = 0; i < flat.size(); i += 3) flat[i] = 200, flat[i + 1] = 40, flat[i + 2] = 90;
  auto jpeg = DecodeImage(Rgb(8, 8, flat, true), 3, ImageLimits{});
  ASSERT_TRUE(jpeg.ok()) << jpeg.status().ToString();
  EXPECT_NEAR(jpeg->pixels[0], 200, 8);
  EXPECT_NEAR(jpeg->pixels[1], 40, 8);
  EXPECT_NEAR(jpeg->pixels[2], 90, 8);
}

TEST(ColourImages, AGrayscaleImageForAColourModelIsAClearError) {
  auto r = DecodeImage(Gray(10, 10, false), 3, ImageLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("grayscale"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("colour"), std::string::npos) << r.status().message();
  // The limits still hold for colour decodes.
  auto big = DecodeImage(Rgb(100, 50, std::vector<uint8_t>(100 * 50 * 3)), 3, {.max_pixels = 4999});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace dnnd

namespace dnnd {
namespace {

std::string Rgba(int w, int h, const std::vector<uint8_t>& interleaved) {
  std::string out;
  stbi_write_png_to_func(Append, &out, w, h, 4, interleaved.data(), w * 4);
  return out;
}

TEST(ImageDecoders, TransparencyIsCompositedOntoWhiteAsAViewerShowsIt) {
  // A drawing on a transparent canvas: black strokes, every other pixel
  // fully transparent (its colour bytes 0, as canvases store them).
  // Dropping alpha would make the whole image black.
  const std::vector<uint8_t> px = {0, 0, 0, 255, 0, 0, 0, 0,  // stroke, transparent
                                   0, 0, 0, 0,   0, 0, 0, 0};
  auto gray = DecodeGrayImage(Rgba(2, 2, px), ImageLimits{});
  ASSERT_TRUE(gray.ok()) << gray.status().ToString();
  EXPECT_EQ(gray->pixels, (std::vector<uint8_t>{0, 255, 255, 255}));
  EXPECT_TRUE(HasLightBorder(*gray));
  int file_channels = 0;
  auto rgb = DecodeImage(Rgba(2, 2, px), 3, ImageLimits{}, &file_channels);
  ASSERT_TRUE(rgb.ok()) << rgb.status().ToString();
  EXPECT_EQ(file_channels, 4);
  EXPECT_EQ(rgb->pixels, (std::vector<uint8_t>{0, 0, 0, 255, 255, 255,  //
                                               255, 255, 255, 255, 255, 255}));
}

TEST(ImageDecoders, ACutShortJpegIsAnErrorNotAGreyImage) {
  const std::string jpeg = Gray(64, 64, true);
  ASSERT_TRUE(DecodeGrayImage(jpeg, ImageLimits{}).ok());
  for (size_t keep : {jpeg.size() / 2, jpeg.size() - 2, size_t{200}, size_t{20}}) {
    auto r = DecodeGrayImage(jpeg.substr(0, keep), ImageLimits{});
    ASSERT_FALSE(r.ok()) << keep;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("cannot decode image: JPEG"), std::string::npos)
        << r.status().message();
  }
}

TEST(ImageDecoders, APngWithABadChecksumIsNamed) {
  std::string png = Gray(8, 8, false);
  png[29] = static_cast<char>(png[29] ^ 0x01);  // the IHDR's CRC
  auto r = DecodeGrayImage(png, ImageLimits{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("cannot decode image: PNG"), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("CRC"), std::string::npos) << r.status().message();
}

TEST(ImageDecoders, EveryOneByteChangeOfValidImagesDecodesOrIsAnError) {
  // stb_image (Debian 12) crashed in CI's image fuzzer on a one-byte
  // mutation of a corpus input. Here every byte of a small PNG and JPEG, in
  // grey and colour, is changed three ways; each must give an image or an
  // error, under the sanitizer builds too.
  const std::vector<uint8_t> colour(12 * 10 * 3, 120);
  for (const std::string& valid : {Gray(12, 10, false), Gray(12, 10, true),
                                   Rgb(12, 10, colour, false), Rgb(12, 10, colour, true)}) {
    int decoded = 0, refused = 0;
    for (size_t i = 0; i < valid.size(); ++i)
      for (uint8_t flip : {0x01, 0x80, 0xFF}) {
        std::string bad = valid;
        bad[i] = static_cast<char>(static_cast<uint8_t>(bad[i]) ^ flip);
        for (int want : {1, 3}) {
          auto r = DecodeImage(bad, want, {.max_pixels = 1 << 20, .max_jpeg_scans = 16});
          if (r.ok()) {
            ++decoded;
            EXPECT_EQ(r->pixels.size(), static_cast<size_t>(r->width) * r->height * want);
          } else {
            ++refused;
            EXPECT_FALSE(r.status().message().empty());
          }
        }
      }
    EXPECT_GT(refused, 0);
  }
}

}  // namespace
}  // namespace dnnd
