// Files compiled into the binary at build time (the dashboard's HTML, CSS and
// JavaScript), so a static binary in a FROM-scratch image serves them with
// nothing on disk.
//
// A set of files is a directory of the source tree turned into a generated
// .cc by cmake/embed_files.cmake; CMakeLists.txt's
//   dnnd_embed_files(dnnd_lib DashboardAssets ${CMAKE_SOURCE_DIR}/src/roles/controller/dashboard)
// defines `std::span<const EmbeddedFile> DashboardAssets()`, which the code
// using it declares next to its own API (roles/controller/dashboard.h).
#pragma once

#include <span>
#include <string_view>

namespace dnnd {

struct EmbeddedFile {
  std::string_view path;          // relative to the embedded directory, '/'-separated: "app.js"
  std::string_view content_type;  // from the extension: "text/javascript; charset=utf-8"
  std::string_view bytes;         // the file's contents, static storage
};

// The file at `path` in `files`, or nullptr.
inline const EmbeddedFile* FindEmbeddedFile(std::span<const EmbeddedFile> files,
                                            std::string_view path) {
  for (const EmbeddedFile& f : files)
    if (f.path == path) return &f;
  return nullptr;
}

}  // namespace dnnd
