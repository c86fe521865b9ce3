// DirLock: one holder at a time (another open of the lock file, in this
// process or another, is refused naming the holder's PID), released when
// the holder goes, carried by a move; RemoveUnlessKept removes what it
// guards unless kept.
#include "core/dir_lock.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "core/files.h"

namespace dnnd {
namespace {

namespace fs = std::filesystem;

struct ScratchDir {
  fs::path path = fs::temp_directory_path() / ("dnnd_dir_lock_" + std::to_string(::getpid()));
  ScratchDir() { fs::create_directories(path); }
  ~ScratchDir() { fs::remove_all(path); }
};

TEST(DirLock, OneHolderAtATimeNamedByPidAndReleasedWithIt) {
  ScratchDir dir;
  auto first = DirLock::Acquire(dir.path.string(), "test.dir");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->held());
  EXPECT_EQ(first->path(), (dir.path / "dnnd.lock").string());
  auto second = DirLock::Acquire(dir.path.string(), "test.dir");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("test.dir " + dir.path.string() +
                                           " is in use by another process (pid " +
                                           std::to_string(::getpid()) + ")"),
            std::string::npos)
      << second.status().ToString();
  // A move carries the lock; the moved-from object holds nothing.
  DirLock moved = std::move(first).value();
  EXPECT_TRUE(moved.held());
  EXPECT_FALSE(DirLock::Acquire(dir.path.string(), "test.dir").ok());
  moved = DirLock();  // released
  EXPECT_TRUE(DirLock::Acquire(dir.path.string(), "test.dir").ok());
}

TEST(DirLock, MissingDirectoryIsAnIoError) {
  ScratchDir dir;
  auto lock = DirLock::Acquire((dir.path / "absent").string(), "test.dir");
  ASSERT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), StatusCode::kIoError) << lock.status().ToString();
}

TEST(RemoveUnlessKept, RemovesATreeUnlessKept) {
  ScratchDir dir;
  fs::create_directories(dir.path / "gone" / "sub");
  std::ofstream(dir.path / "gone" / "sub" / "f") << "x";
  fs::create_directories(dir.path / "kept");
  {
    RemoveUnlessKept gone((dir.path / "gone").string());
    RemoveUnlessKept kept((dir.path / "kept").string());
    kept.Keep();
  }
  EXPECT_FALSE(fs::exists(dir.path / "gone"));
  EXPECT_TRUE(fs::exists(dir.path / "kept"));
}

}  // namespace
}  // namespace dnnd
